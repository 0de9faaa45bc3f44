"""The ultralytics half of benchmarks/vs_ultralytics.py, run by that script in ultralytics' own interpreter.

    YOLO_OFFLINE=1 YOLO_CONFIG_DIR=OUT/config /path/to/ultra-venv/bin/python benchmarks/ultralytics_side.py \
        --data OUT/data.yaml --val-list OUT/val_images.txt --imgsz 128 --epochs 40 --batch 16 --seed 0 \
        --device cpu --threads 2 --project OUT --out OUT/side.json

Trains YOLOv5n from scratch (`YOLO("yolov5n.yaml")`: ultralytics builds its anchor-free v5u head
from the yaml, no weights) with ultralytics' own defaults except what a side-by-side must fix:
- image size, epochs, batch, seed and device as given;
- no plots: they fetch a font;
- no AMP: on a GPU its check fetches weights (on a CPU it trains in FP32 anyway), so a GPU run
  trains in FP32 here;
- validation only after the last epoch, so that epoch times compare with slimflow's (which
  validates every 10 epochs);
- `--threads` torch threads: on a CPU ultralytics sets os.cpu_count() - 1 (1 on a 2-core
  machine) when it selects the device, while slimflow keeps torch's default, so the caller
  passes slimflow's count.
Then it predicts every val image at slimflow's thresholds and writes the boxes (original pixels,
COCO xywh) per image path, for the caller to score with slimflow's COCOeval. Imports ultralytics,
its torch and the standard library only: this interpreter need not have slimflow.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--data", "--val-list", "--project", "--out", "--device"):
        parser.add_argument(name, required=True)
    for name in ("--imgsz", "--epochs", "--batch", "--seed", "--threads", "--max-det"):
        parser.add_argument(name, type=int, required=name != "--max-det", default=300)
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--iou", type=float, default=0.6)
    args = parser.parse_args()

    start = time.perf_counter()
    import torch
    import ultralytics
    import ultralytics.utils.torch_utils
    from ultralytics import YOLO, settings

    # select_device() calls torch.set_num_threads(NUM_THREADS) on a CPU: the one knob it offers.
    ultralytics.utils.torch_utils.NUM_THREADS = args.threads

    # The caller points YOLO_CONFIG_DIR at a folder of this run, so these touch no user settings:
    # no telemetry, no experiment-tracker integrations.
    settings.update({"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
                     "raytune": False, "tensorboard": False, "wandb": False})
    model = YOLO("yolov5n.yaml")
    t_train = time.perf_counter()
    model.train(data=args.data, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch, seed=args.seed,
                device=args.device, project=args.project, name="train", exist_ok=True, pretrained=False,
                plots=False, amp=False, val=False, verbose=False)
    train_s = time.perf_counter() - t_train
    # ultralytics' own score of the same weights (its mAP code, multi-label NMS at IoU 0.7), for reference
    own_val = {k: float(v) for k, v in (model.trainer.metrics or {}).items() if isinstance(v, (int, float))}
    save_dir = Path(model.trainer.save_dir)
    with open(save_dir / "results.csv", newline="") as f:
        cumulative = [float(row["time"]) for row in csv.DictReader(f)]
    epoch_s = [b - a for a, b in zip([0.0, *cumulative], cumulative)]

    # best.pt: with validation only after the last epoch it holds that epoch's (EMA) weights.
    trained = YOLO(str(model.trainer.best))
    images = [line for line in Path(args.val_list).read_text().splitlines() if line]
    detections, t_pred = [], time.perf_counter()
    for result in trained.predict(source=images, imgsz=args.imgsz, conf=args.conf, iou=args.iou,
                                  max_det=args.max_det, device=args.device, batch=args.batch, stream=True,
                                  verbose=False):
        for (x0, y0, x1, y1), score, cls in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                                result.boxes.cls.tolist()):
            detections.append({"image": result.path, "category_id": int(cls), "score": round(score, 5),
                               "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]})
    predict_s = time.perf_counter() - t_pred
    Path(args.out).write_text(json.dumps({
        "detections": detections, "epoch_s": epoch_s, "train_s": train_s, "predict_s": predict_s,
        "side_s": time.perf_counter() - start, "weights": str(model.trainer.best), "own_val": own_val,
        "params": sum(p.numel() for p in trained.model.parameters()), "images_predicted": len(images),
        "args": {k: v for k, v in vars(model.trainer.args).items() if v is None or isinstance(v, (int, float, str))},
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                     "python": platform.python_version(), "threads": torch.get_num_threads()}}))


if __name__ == "__main__":
    main()
