"""benchmarks/gpu_check.sh checks its own wiring on the CPU: `--dry-run` runs every command the GPU
run would (tiny sizes, device cpu, the chains planned with snakemake -n) and passes; without a GPU
the real run stops at its first step with exit 1 and says why."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.e2e  # trains and exports a tiny detector

SCRIPT = REPO / "benchmarks/gpu_check.sh"
STEPS = {"env", "chain-test", "chain-test_reid", "chain-test_pose", "chain-test_diffusion",
         "detector-train-cpu", "detector-train-gpu", "detector-eval-cpu-weights-on-gpu", "detector-compare-training",
         "detector-compare-evaluation", "export-fp32", "export-int8", "latency-cpu", "latency-cuda",
         "latency-tensorrt", "throughput-yolov5n-2", "throughput-yolov5s-4"}


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHON": sys.executable, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    start = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), *args, "--work", str(tmp_path / "work"), "--out",
                           str(tmp_path / "out.json")], capture_output=True, text=True, timeout=600, env=env)
    return proc, time.monotonic() - start


def test_dry_run_runs_every_command_on_the_cpu(tmp_path):
    proc, seconds = _run(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "out.json").read_text())
    steps = {s["name"]: s["status"] for s in result["steps"]}
    assert STEPS <= set(steps), STEPS - set(steps)
    assert result["ok"] and steps["latency-cuda"] == "skipped" and steps["detector-train-gpu"] == "ok"
    assert result["results"]["detector_evaluation"]["max_diff"] == 0.0  # the same weights on the same CPU
    for name in ("yolov5n_2", "yolov5s_4"):
        layouts = result["results"][f"throughput_{name}"]["layouts"]
        assert all(v["img_per_s"] > 0 for v in layouts.values())
    assert len(result["results"]["latency_cpu"]) == 2  # FP32 and INT8
    print(f"gpu_check.sh --dry-run: {seconds:.0f} s")


def test_without_a_gpu_the_real_run_stops_at_once_and_says_why(tmp_path):
    proc, _ = _run(tmp_path)
    assert proc.returncode == 1
    assert "torch sees no CUDA device" in proc.stdout + proc.stderr + (tmp_path / "work/logs/env.log").read_text()
    assert json.loads((tmp_path / "out.json").read_text())["failed"] == ["env"]
