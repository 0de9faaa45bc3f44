"""A YOLOv5n checkpoint built and saved by the `yolov5` package (7.0.14), with reference outputs (docs/WEIGHTS.md).

Run in an environment where `pip install yolov5` worked; check.py (in slimflow's) imports and compares.
"""
import os
from copy import deepcopy
from pathlib import Path

import torch
import yolov5
from yolov5.models.yolo import DetectionModel

torch.manual_seed(0)
cfg = Path(yolov5.__file__).parent / "models" / "yolov5n.yaml"
model = DetectionModel(str(cfg), ch=3, nc=80)
g = torch.Generator().manual_seed(0)
with torch.no_grad():  # BN statistics as after training, so the comparison is not trivially of an identity
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g)); m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
model.names = {i: f"c{i}" for i in range(80)}
model.eval()
x = torch.rand(2, 3, 128, 160, generator=g)
with torch.no_grad():
    y32 = model(x)[0]
    y16 = deepcopy(model).half().float()(x)[0]
meta = {"epoch": -1, "best_fitness": None, "updates": 0, "optimizer": None, "opt": {"imgsz": 640}, "git": None,
        "date": "2026-11-30T00:00:00"}
torch.save({**meta, "model": deepcopy(model), "ema": None}, "/tmp/y5run/fp32.pt")
torch.save({**meta, "model": deepcopy(model).half(), "ema": deepcopy(model).half()}, "/tmp/y5run/fp16_ema.pt")
torch.save({"x": x, "y32": y32, "y16": y16}, "/tmp/y5run/ref.pt")
print(type(model).__module__, y32.shape, os.path.getsize("/tmp/y5run/fp16_ema.pt"))
