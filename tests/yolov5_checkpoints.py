"""YOLOv5 checkpoints as YOLOv5's train.py saves them, built with the stand-in `models` package."""
from __future__ import annotations

import sys
from copy import deepcopy
from pathlib import Path

import torch

STANDIN = Path(__file__).resolve().parent / "yolov5_standin"


def yolov5_model(seed: int = 0, nc: int = 80, activation: str | None = None):
    """A yolov5n DetectionModel with random weights and BN statistics, in eval mode."""
    if str(STANDIN) not in sys.path:
        sys.path.insert(0, str(STANDIN))
    from models import common
    from models.yolo import YOLOV5N, DetectionModel

    from conftest import randomize_bn

    torch.manual_seed(seed)
    cfg = {**YOLOV5N, **({"activation": activation} if activation else {})}
    default_act = common.Conv.default_act
    try:
        model = DetectionModel(cfg, nc=nc)
    finally:
        common.Conv.default_act = default_act  # parse_model sets it for the whole process, as YOLOv5 does
    model.names = [f"name{i}" for i in range(nc)]
    return randomize_bn(model, seed).eval()


def save_yolov5(path: Path, model, ema=None, half: bool = True) -> Path:
    """torch.save the way YOLOv5's train.py does: whole models, FP16, beside the run's metadata."""
    cast = (lambda m: deepcopy(m).half()) if half else deepcopy
    torch.save({"epoch": -1, "best_fitness": None, "model": cast(model), "ema": None if ema is None else cast(ema),
                "updates": 0, "optimizer": None, "opt": {"imgsz": 640, "weights": "yolov5n.pt"},
                "git": None, "date": "2024-01-01T00:00:00"}, path)
    return path
