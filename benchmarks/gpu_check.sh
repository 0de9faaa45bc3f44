#!/usr/bin/env bash
# slimflow on one CUDA GPU, proven by one run: under 8 minutes on a current data-centre GPU
# (H100/A100 class, 16 cores), from a fresh checkout with slimflow's packages installed, no network.
#
#   bash benchmarks/gpu_check.sh                  # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --dry-run        # any CPU: every command below, tiny sizes, device cpu
#   options: --out FILE (gpu_check.json)  --work DIR (/tmp/slimflow-gpu-check, emptied first)
#            PYTHON=/path/to/python (default: python on PATH)
#
# In a dry run "gpu" is the CPU too, and the chains are planned (snakemake -n), not run.
# Steps (log of each: WORK/logs/STEP.log; every command run: WORK/commands.txt):
#   env                 torch, CUDA, GPU, ONNX Runtime's providers, TensorRT; fails without a CUDA device
#   chain-<family>      the tiny chain of each family (config/test*.yaml), every target, through
#                       snakemake with device: cuda and train.amp: true (the four chains run at once)
#   detector-*          the default detector (config/config.yaml, 3 epochs, fp32 on CPU, AMP on CUDA):
#                       baseline trained on CPU and on CUDA; their metrics may differ by 0.10 (absolute,
#                       metrics in [0, 1]: another device rounds differently and training amplifies it);
#                       the CPU-trained weights evaluated on CUDA and on CPU: 0.005 (same weights)
#   export-*, latency-* that baseline exported to ONNX FP32 and INT8 (benchmarks/latency.py), timed
#                       on ORT's CPU, CUDA and (when installed) TensorRT execution providers
#   throughput-*        training img/s of yolov5n and yolov5s at 640 px, batch 32 and 64, AMP, NCHW
#                       and channels_last (benchmarks/train_step.py)
# The results file (JSON) holds every step's status, time, command and numbers; a table is printed.
# Exit status 0 when every step passed; 1 when any failed or timed out (skipped steps do not fail:
# e.g. no TensorRT, or an onnxruntime without CUDAExecutionProvider: pip install onnxruntime-gpu).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
DRY=0; OUT=gpu_check.json; WORK=/tmp/slimflow-gpu-check
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --out) OUT=$2; shift ;;
    --work) WORK=$2; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
OUT=$(realpath -m "$OUT"); WORK=$(realpath -m "$WORK")
rm -rf "$WORK"; mkdir -p "$WORK"/{logs,status,parts,cfg}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
SLIM=("$PY" -m pipeline_lib)
if [ $DRY = 1 ]; then
  DEVICE=cpu; CORES=2; LIMIT=300; EPOCHS=1; STEPS=1; ROUNDS=1; RUNS=(--runs 4 --rounds 2 --warmup 1)
  SIZE=64; THROUGHPUT="yolov5n:2 yolov5s:4"; CHAIN_ARGS=(-n); DATA="{n_train: 16, n_val: 8, imgsz: 64}"; TP_DATA="{n_train: 8, n_val: 4, imgsz: 64}"
else
  DEVICE=cuda; CORES=4; LIMIT=420; EPOCHS=3; STEPS=10; ROUNDS=2; RUNS=(--runs 200 --rounds 10 --warmup 20)
  SIZE=640; THROUGHPUT="yolov5n:32 yolov5n:64 yolov5s:32 yolov5s:64"; CHAIN_ARGS=(); DATA="{}"; TP_DATA="{n_train: 64, n_val: 8, imgsz: 640}"
fi

# step NAME SECONDS COMMAND...: run it with a time limit, log it, record its status; its exit status.
step() {
  local name=$1 limit=$2; shift 2
  local start=$SECONDS status=ok rc=0
  printf '%q ' "$@" >>"$WORK/commands.txt"; echo >>"$WORK/commands.txt"
  echo "[gpu_check] $name"
  timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1 || rc=$?
  if [ $rc = 124 ]; then status="timed out"; elif [ $rc != 0 ]; then status=failed; fi
  [ $rc = 0 ] || { echo "[gpu_check] $name: $status (exit $rc); last lines of $WORK/logs/$name.log:"; tail -5 "$WORK/logs/$name.log"; }
  record "$name" "$status" $((SECONDS - start)) "$@"
  return $rc
}
record() {  # record NAME STATUS SECONDS [COMMAND...]
  "$PY" -c 'import json, sys; n, s, t, *c = sys.argv[2:]; open(sys.argv[1], "w").write(json.dumps(
    {"name": n, "status": s, "seconds": int(t), "log": f"logs/{n}.log", "command": " ".join(c)}))' \
    "$WORK/status/$1.json" "$@"
}

step env 120 "$PY" "$REPO/benchmarks/gpu_check.py" env --device $DEVICE --out "$WORK/parts/env.json" || {
  "$PY" "$REPO/benchmarks/gpu_check.py" report "$WORK" --out "$OUT"; exit 1; }

# 1. The tiny chain of every family, all four at once (they share the GPU; each gets CORES cores).
printf 'device: %s\ntrain: {amp: true}\n' $DEVICE >"$WORK/cfg/gpu.yaml"
for cfg in test test_reid test_pose test_diffusion; do
  step "chain-$cfg" $LIMIT "$PY" -m snakemake --snakefile "$REPO/Snakefile" --directory "$WORK/chain-$cfg" \
    --configfile "$REPO/config/$cfg.yaml" "$WORK/cfg/gpu.yaml" --cores $CORES "${CHAIN_ARGS[@]}" &
done

# 2. The default detector: baseline on CPU and on the GPU, and the CPU weights evaluated on both.
printf 'train: {epochs: %s, val_interval: 1, amp: false}\ndataset: {synthetic: %s}\n' $EPOCHS "$DATA" >"$WORK/cfg/detector.yaml"
[ $DRY = 1 ] && printf 'model: {imgsz: 64}\n' >>"$WORK/cfg/detector.yaml"
detector() {  # detector LABEL DEVICE [--set ...]: prepare, train and evaluate the baseline in WORK/detector-LABEL
  local label=$1 dev=$2; shift 2
  local cfg=(--config "$REPO/config/config.yaml" --config "$WORK/cfg/detector.yaml" --results "$WORK/detector-$label/results")
  step "detector-data-$label" $LIMIT "${SLIM[@]}" prepare-dataset "${cfg[@]}" &&
    step "detector-train-$label" $LIMIT "${SLIM[@]}" train "${cfg[@]}" --stage baseline --set device=$dev "$@" &&
    step "detector-eval-$label" $LIMIT "${SLIM[@]}" evaluate "${cfg[@]}" --stage baseline --set device=$dev &&
    cp "$WORK/detector-$label/results/metrics/baseline.json" "$WORK/$label-trained.json"
}
detector cpu cpu
detector gpu $DEVICE --set train.amp=true
D=(--config "$REPO/config/config.yaml" --config "$WORK/cfg/detector.yaml" --results "$WORK/detector-cpu/results")
step detector-eval-cpu-weights-on-gpu $LIMIT "${SLIM[@]}" evaluate "${D[@]}" --stage baseline --set device=$DEVICE
step detector-compare-training 60 "$PY" "$REPO/benchmarks/gpu_check.py" compare "$WORK/cpu-trained.json" \
  "$WORK/gpu-trained.json" --tolerance 0.10 --out "$WORK/parts/detector_training.json"
step detector-compare-evaluation 60 "$PY" "$REPO/benchmarks/gpu_check.py" compare "$WORK/cpu-trained.json" \
  "$WORK/detector-cpu/results/metrics/baseline.json" --tolerance 0.005 --out "$WORK/parts/detector_evaluation.json"

# 4. Latency of the CPU baseline's ONNX FP32 and INT8 on ORT's CPU, CUDA and TensorRT providers.
EXPORTED=("$WORK/detector-cpu/results/export/baseline.onnx" "$WORK/detector-cpu/results/export/baseline.int8.onnx")
step export-fp32 $LIMIT "${SLIM[@]}" export "${D[@]}" --stage baseline &&
  step export-int8 $LIMIT "${SLIM[@]}" quantize "${D[@]}" --stage baseline
providers() { "$PY" -c 'import onnxruntime as o; print(" ".join(o.get_available_providers()))'; }
for provider in cpu cuda tensorrt; do
  ep=$(case $provider in cpu) echo CPU;; cuda) echo CUDA;; tensorrt) echo Tensorrt;; esac)ExecutionProvider
  if [ $DRY = 1 ] && [ $provider != cpu ]; then record latency-$provider skipped 0 "dry run: CPU only"
  elif ! providers | grep -qw $ep; then record latency-$provider skipped 0 "onnxruntime has no $ep"
  else step latency-$provider $LIMIT "$PY" "$REPO/benchmarks/latency.py" "${EXPORTED[@]}" --provider $provider \
         "${RUNS[@]}" --json "$WORK/parts/latency_$provider.json"; fi
done
wait  # the chains

# 3. Training throughput, the GPU to itself: two detector sizes, two batches, NCHW and channels_last
# (the dry run times each model at one batch: the other two would run the same command again).
for pair in $THROUGHPUT; do
  model=${pair%:*}; batch=${pair#*:}
  c="$WORK/cfg/tp-$model-$batch.yaml"
  printf 'model: {name: %s, imgsz: %s}\ntrain: {batch_size: %s, workers: 0}\ndataset: {synthetic: %s}\n' \
    $model $SIZE $batch "$TP_DATA" >"$c"
  step throughput-$model-$batch $LIMIT "$PY" "$REPO/benchmarks/train_step.py" --configfile "$REPO/config/config.yaml" \
    "$c" --directory "$WORK/throughput" --device $DEVICE --amp --steps $STEPS --rounds $ROUNDS \
    --json "$WORK/parts/throughput_${model}_$batch.json"
done

"$PY" "$REPO/benchmarks/gpu_check.py" report "$WORK" --out "$OUT"
