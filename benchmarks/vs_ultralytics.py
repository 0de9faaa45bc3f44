"""slimflow's detector against ultralytics' YOLOv5n, trained side by side on one YOLO-format dataset.

    python benchmarks/vs_ultralytics.py data/digits/data.yaml --out runs/vs-digits \
        --ultralytics-python /tmp/ultra/bin/python

slimflow: the baseline stage of the experiment in --configfile (default config/config.yaml) on
this data, through the real workflow (`snakemake results/metrics/baseline.json` in OUT/slimflow,
with a config laid over it that sets dataset.path, model.imgsz, the baseline's epochs and batch,
seed and device). ultralytics: `YOLO("yolov5n.yaml")` from scratch in its own interpreter
(--ultralytics-python, or $SLIMFLOW_ULTRALYTICS_PYTHON: a virtual environment with ultralytics;
docs/BENCHMARKS.md says how to build one), with ultralytics' defaults but the same image size,
epochs, batch, seed, device and torch threads, no plots, no AMP, nothing downloaded
(benchmarks/ultralytics_side.py). Its predictions on the val images, at slimflow's evaluation
thresholds, are scored against the ground truth slimflow's prepare step wrote, by the function
that scores slimflow's own (`coco_detection_metrics`, pycocotools' COCOeval).

Prints a Markdown table (also OUT/table.md; every number in OUT/results.json): mAP50-95, mAP50,
params, train img/s (train images x epochs over the seconds of the epochs that ran no
validation), train s (the trainer's epochs, validation included) and wall s (everything the side
ran: startup, data checks, training, prediction). `--sides slimflow` runs slimflow's side alone.
`--chain` then runs the rest of slimflow's chain on the same data (sparsity, prune, finetune,
export) and adds its summary: every artifact's mAP50-95 against the chain's accuracy reference.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pipeline_lib.config import load_config, stage_config
from pipeline_lib.errors import UserError
from pipeline_lib.io import read_json, write_json, write_text
from pipeline_lib.tasks.detection.evaluate import coco_detection_metrics
from pipeline_lib.tasks.detection.yolo_format import load_data_yaml

REPO = Path(__file__).resolve().parent.parent
SIDES = ("slimflow", "ultralytics")
BUILD_ENV = "python -m venv /tmp/ultra && /tmp/ultra/bin/pip install ultralytics (docs/BENCHMARKS.md)"


def check_ultralytics(python: str | None) -> str:
    """The interpreter's ultralytics version; a UserError saying how to get one otherwise."""
    if not python:
        raise UserError("the ultralytics side needs --ultralytics-python PATH (or SLIMFLOW_ULTRALYTICS_PYTHON), an "
                        f"interpreter with ultralytics: {BUILD_ENV}; or run --sides slimflow")
    probe = [python, "-c", "import ultralytics; print(ultralytics.__version__)"]
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=300)
    except OSError as e:
        raise UserError(f"--ultralytics-python {python}: cannot run it ({e.strerror}); build one: "
                        f"{BUILD_ENV}") from None
    if proc.returncode != 0:
        raise UserError(f"--ultralytics-python {python}: ultralytics does not import there "
                        f"({(proc.stderr.strip().splitlines() or ['no output'])[-1]}); {BUILD_ENV}")
    return proc.stdout.strip()


def run_logged(cmd: list[str], log: Path, what: str, env: dict | None = None) -> float:
    """Run `cmd` with its output in `log`; return its wall seconds. A failure names the log."""
    t0 = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        raise UserError(f"{what} failed (exit {proc.returncode}); its output: {log}")
    return time.perf_counter() - t0


def snakemake(run: Path, configs: list[Path], target: str) -> float:
    cmd = [sys.executable, "-m", "snakemake", target, "--snakefile", str(REPO / "Snakefile"), "--directory", str(run),
           "--cores", "all", "--configfile", *map(str, configs)]
    return run_logged(cmd, run / "snakemake.log", f"snakemake {target}")


def throughput(epoch_s: list[float], validated: list[bool], n_train: int) -> float:
    """Train images per second over the epochs without validation (all epochs when every one validated)."""
    plain = [s for s, v in zip(epoch_s, validated) if not v] or epoch_s
    return n_train * len(plain) / sum(plain)


def slimflow_side(run: Path, n_train: int, gt: dict) -> dict:
    results = run / "results"
    with open(results / "train/baseline.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    epoch_s = [float(r["time_s"]) for r in rows]
    metrics = coco_detection_metrics(gt, read_json(results / "metrics/baseline.predictions.json"))
    published = read_json(results / "metrics/baseline.json")
    if not math.isclose(metrics["mAP50_95"], published["metrics"]["mAP50_95"], abs_tol=1e-9):
        raise UserError(f"{results}/metrics/baseline.json says mAP50-95 {published['metrics']['mAP50_95']}, its "
                        f"predictions score {metrics['mAP50_95']} here: the two scorings should be one (report this)")
    return {"metrics": metrics, "params": published["params"], "epoch_s": epoch_s, "train_s": sum(epoch_s),
            "img_per_s": throughput(epoch_s, [r["metrics/mAP50_95"] != "" for r in rows], n_train),
            "best_epoch": max(rows, key=lambda r: float(r["fitness"] or "-inf"))["epoch"]}


def chain_rows(summary_csv: Path) -> list[dict]:
    """Each artifact of slimflow's summary.csv: accuracy, its difference to the reference, epochs, FLOPs ratio."""
    with open(summary_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{"artifact": r["stage"],  # "pruned_finetuned [onnx_int8]" for a model in ONNX Runtime
             "mAP50_95": float(r["mAP50_95"]), "vs_reference": float(r["mAP50_95_vs_reference"]),
             "epochs": int(float(r["epochs"])), "flops_vs_baseline": float(r["flops_vs_baseline"] or "nan")}
            for r in rows]


def ultralytics_side(out: Path, python: str, args, cfg: dict, manifest: dict, gt: dict, threads: int) -> dict:
    """Train and predict in ultralytics' interpreter; score its boxes with slimflow's ground truth."""
    out.mkdir(parents=True)
    spec = load_data_yaml(args.data)
    # Absolute paths: ultralytics reads a relative `path` against the working directory, slimflow
    # against the yaml's folder (and load_data_yaml gives a folder inside this one relative to it).
    data = {"path": os.path.abspath(spec["root"]), "train": [os.path.abspath(p) for p in spec["train"]],
            "val": [os.path.abspath(p) for p in spec["val"]], "names": dict(enumerate(spec["names"]))}
    write_text(out / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    val = manifest["splits"]["val"]
    write_text(out / "val_images.txt", "".join(f"{item['image']}\n" for item in val))
    ev = cfg["evaluate"]
    cmd = [python, str(REPO / "benchmarks/ultralytics_side.py"), "--data", str(out / "data.yaml"),
           "--val-list", str(out / "val_images.txt"), "--project", str(out), "--out", str(out / "side.json"),
           "--device", args.device, "--imgsz", str(args.imgsz), "--epochs", str(args.epochs),
           "--batch", str(args.batch), "--seed", str(args.seed), "--threads", str(threads),
           "--conf", str(ev["conf_thres"]), "--iou", str(ev["iou_thres"]), "--max-det", str(ev["max_det"])]
    # YOLO_OFFLINE: no online checks; a config folder of this run: its settings file is not the user's.
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(out / "config")}
    wall = run_logged(cmd, out / "log.txt", "the ultralytics side", env)
    side = read_json(out / "side.json")
    ids = {os.path.realpath(item["image"]): item["image_id"] for item in val}
    detections = [{"image_id": ids[os.path.realpath(d["image"])], "category_id": d["category_id"], "bbox": d["bbox"],
                   "score": d["score"]} for d in side["detections"]]
    write_json(out / "predictions.json", detections)  # COCO results format, as slimflow's evaluate writes them
    epochs, n_train = len(side["epoch_s"]), manifest["counts"]["train"]["images"]
    return {"metrics": coco_detection_metrics(gt, detections), "params": side["params"], "epoch_s": side["epoch_s"],
            "train_s": sum(side["epoch_s"]),
            # it validated after the last epoch only
            "img_per_s": throughput(side["epoch_s"], [i == epochs - 1 for i in range(epochs)], n_train),
            "wall_s": wall, "own_val": side["own_val"], "versions": side["versions"], "settings": side["args"],
            "images_predicted": side["images_predicted"]}


def machine(threads: int) -> str:
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    cpu = models[0] if models else platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else float("nan")
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB, {threads} torch threads per side, Python "
            f"{platform.python_version()}, torch {torch.__version__}, {datetime.date.today().isoformat()}")


def table(rows: dict, args, manifest: dict, cfg: dict, line: str, versions: dict) -> str:
    names = {"slimflow": f"slimflow {cfg['model']['name']} ({', '.join(Path(c).name for c in args.configfile)})",
             "ultralytics": f"ultralytics {versions.get('ultralytics', '')} YOLOv5n (yolov5n.yaml, its defaults)"}
    out = ["| detector | mAP50-95 | mAP50 | params | train img/s | train s | wall s |", "|---|---|---|---|---|---|---|"]
    for side, r in rows.items():
        m = r["metrics"]
        out.append(f"| {names[side]} | {m['mAP50_95']:.3f} | {m['mAP50']:.3f} | {r['params']:,} | "
                   f"{r['img_per_s']:.1f} | {r['train_s']:.0f} | {r['wall_s']:.0f} |")
    own = rows.get("ultralytics", {}).get("own_val", {})
    if "metrics/mAP50-95(B)" in own:
        out += ["", f"ultralytics' own validation of the same weights (its mAP code, multi-label NMS at IoU 0.7): "
                    f"mAP50-95 {own['metrics/mAP50-95(B)']:.3f}, mAP50 {own['metrics/mAP50(B)']:.3f}"]
    chain = rows.get("slimflow", {}).get("chain")
    if chain:
        reference = next(r["artifact"] for r in chain["rows"] if r["vs_reference"] == 0)
        out += ["", f"slimflow's whole chain on this data (--chain, {chain['wall_s']:.0f} s after the baseline); "
                    f"accuracy reference: {reference}, the best unpruned checkpoint",
                "", "| artifact | mAP50-95 | Δ vs reference (points) | epochs | FLOPs vs baseline |", "|---|---|---|---|---|"]
        out += [f"| {r['artifact']} | {r['mAP50_95']:.3f} | {100 * r['vs_reference']:+.1f} | {r['epochs']} | "
                f"{r['flops_vs_baseline']:.3f} |" for r in chain["rows"]]
    counts = manifest["counts"]
    out += ["", f"data: {args.data} ({counts['train']['images']} train / {counts['val']['images']} val images, "
                f"{len(manifest['names'])} classes); imgsz {args.imgsz}, {args.epochs} epochs, batch {args.batch}, "
                f"seed {args.seed}, device {args.device}", f"machine: {line}"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a YOLO data.yaml (path, train, val, names)")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for both runs and the table")
    parser.add_argument("--configfile", nargs="+", type=Path, default=[REPO / "config/config.yaml"],
                        help="slimflow's experiment (its baseline stage is trained)")
    parser.add_argument("--imgsz", type=int, help="default: the config's model.imgsz")
    parser.add_argument("--epochs", type=int, help="default: the config's baseline epochs")
    parser.add_argument("--batch", type=int, help="default: the config's baseline batch size")
    parser.add_argument("--seed", type=int, help="default: the config's seed")
    parser.add_argument("--device", default="cpu", help="both sides; cpu unless you mean to compare on a GPU (0)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--chain", action="store_true",
                        help="then run slimflow's whole chain on the data and report its slim models")
    parser.add_argument("--ultralytics-python", default=os.environ.get("SLIMFLOW_ULTRALYTICS_PYTHON"),
                        help="an interpreter with ultralytics (default: $SLIMFLOW_ULTRALYTICS_PYTHON)")
    args = parser.parse_args(argv)
    try:
        run(args)
    except UserError as e:
        sys.exit(f"slimflow error: {e}")


def run(args) -> None:
    if not args.data.is_file():
        raise UserError(f"{args.data}: no such data.yaml (a YOLO dataset's; python benchmarks/digits_dataset.py OUT "
                        "builds one, and the embedded dataset's is results/data/synthetic/data.yaml of a run)")
    if args.out.exists() and any(args.out.iterdir()):
        raise UserError(f"{args.out} is not empty: give a new --out (a benchmark reuses no earlier run)")
    if args.chain and "slimflow" not in args.sides:
        raise UserError("--chain runs the rest of slimflow's chain after its baseline: add slimflow to --sides")
    versions = {"ultralytics": check_ultralytics(args.ultralytics_python)} if "ultralytics" in args.sides else {}
    base = load_config(args.configfile)
    if base["task"] != "detection":
        raise UserError(f"{args.configfile[-1]}: task is {base['task']}; this benchmark compares detectors")
    train = stage_config(base, "baseline")
    args.imgsz = args.imgsz or base["model"]["imgsz"]
    args.epochs = args.epochs or train["epochs"]
    args.batch = args.batch or train["batch_size"]
    args.seed = base["seed"] if args.seed is None else args.seed
    args.data, args.configfile = args.data.resolve(), [c.resolve() for c in args.configfile]
    run_dir = args.out.resolve() / "slimflow"
    run_dir.mkdir(parents=True)
    overlay = run_dir / "benchmark.yaml"
    write_text(overlay, yaml.safe_dump({
        "seed": args.seed, "device": args.device, "dataset": {"path": str(args.data)}, "model": {"imgsz": args.imgsz},
        "stages": {"baseline": {"epochs": args.epochs, "batch_size": args.batch}}}, sort_keys=False))
    configs = [*args.configfile, overlay]
    cfg = load_config(configs)

    # slimflow's prepare step validates the data once and writes the val ground truth both sides are
    # scored on; slimflow's side runs it in the same snakemake call as its training.
    rows, target = {}, "results/metrics/baseline.json" if "slimflow" in args.sides else "results/data/dataset.json"
    what = f"training the baseline stage for {args.epochs} epochs" if "slimflow" in args.sides else "checking the data"
    print(f"slimflow: {what} in {run_dir} ...", file=sys.stderr)
    wall = snakemake(run_dir, configs, target)
    manifest = read_json(run_dir / "results/data/dataset.json")
    gt = read_json(run_dir / "results/data/val_coco.json")
    import torch  # threads only: both sides train with what torch gives slimflow here

    threads = torch.get_num_threads()
    if "slimflow" in args.sides:
        rows["slimflow"] = {**slimflow_side(run_dir, manifest["counts"]["train"]["images"], gt), "wall_s": wall}
    if "ultralytics" in args.sides:
        print(f"ultralytics {versions['ultralytics']}: training yolov5n.yaml for {args.epochs} epochs ...",
              file=sys.stderr)
        rows["ultralytics"] = ultralytics_side(args.out.resolve() / "ultralytics", args.ultralytics_python, args, cfg,
                                               manifest, gt, threads)
        versions.update(rows["ultralytics"]["versions"])
    if args.chain:
        print(f"slimflow: the rest of the chain in {run_dir} ...", file=sys.stderr)
        wall = snakemake(run_dir, configs, "results/summary.csv")
        rows["slimflow"]["chain"] = {"wall_s": wall, "rows": chain_rows(run_dir / "results/summary.csv")}
    line = machine(threads)
    text = table(rows, args, manifest, cfg, line, versions)
    write_text(args.out / "table.md", text)
    write_json(args.out / "results.json", {"data": str(args.data), "configfile": [str(c) for c in args.configfile],
                                          "imgsz": args.imgsz, "epochs": args.epochs, "batch": args.batch,
                                          "seed": args.seed, "device": args.device, "threads": threads, "machine": line,
                                          "sides": rows})
    print(text)


if __name__ == "__main__":
    main()
