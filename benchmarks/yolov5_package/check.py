"""Import the yolov5-package checkpoints of make.py with slimflow (no pickle run) and compare raw outputs (docs/WEIGHTS.md).
"""
import subprocess
import sys
import time

import torch
from pipeline_lib.tasks import load_model

ref = torch.load("/tmp/y5run/ref.pt", weights_only=True)
for name, key in (("fp32", "y32"), ("fp16_ema", "y16")):
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "pipeline_lib", "import-weights", f"/tmp/y5run/{name}.pt",
                           f"/tmp/y5run/{name}.slimflow.pt"], capture_output=True, text=True)
    print(name, "rc", proc.returncode, proc.stderr.strip().splitlines()[-1][:200], f"{time.time() - t:.1f}s")
    model = load_model(f"/tmp/y5run/{name}.slimflow.pt").model.eval()  # weights_only=True load
    with torch.no_grad():
        out = model(ref["x"])
    print(name, tuple(out.shape), "max |diff|", (out - ref[key]).abs().max().item())
