"""Each step's job imports only the heavy libraries its work needs: a Snakemake job is a fresh
Python process (`workflow/scripts/*.py` imports one step and `pipeline_lib.runner`), and a chain
runs ~18 of them, so a library a step never calls (onnx ~0.8 s, torchvision with torch._dynamo
~1.5 s) must not load with it. docs/BENCHMARKS.md ("What a job pays in imports") has the seconds.

One fresh process imports the steps one after another, from the lightest to the heaviest, and
records which libraries are loaded after each; a step is checked against the libraries the
lighter steps before it have not loaded either (each step's forbidden set is a subset of the
previous one's), so one process answers for all.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib")

# (what the process imports, libraries that must not be loaded after it), lightest first.
STEPS = [
    ("prepare_dataset", {"torch", "torchvision", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib"}),
    ("torch_latency_stage", {"torchvision", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib"}),
    ("evaluate_stage", {"torchvision", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib"}),
    ("prune_stage", {"torchvision", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib"}),
    ("train_evaluator", {"torchvision", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib"}),
    ("family detection", {"torchvision", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib"}),
    ("family pose", {"torchvision", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib"}),
    ("train_stage", {"torchvision", "onnx", "onnxruntime", "torch_pruning", "matplotlib"}),
    ("family diffusion", {"torchvision", "onnx", "onnxruntime", "torch_pruning"}),
    ("report", {"torchvision", "onnx", "onnxruntime", "torch_pruning"}),
]

PROBE = """
import json, sys
import pipeline_lib.runner, pipeline_lib.steps as steps
from pipeline_lib.tasks import get_task
loaded = {}
for step in sys.argv[1:]:
    get_task(step.split()[1]) if step.startswith("family ") else getattr(steps, step)
    loaded[step] = [m for m in %r if m in sys.modules]
print(json.dumps(loaded))
""" % (HEAVY,)


@pytest.fixture(scope="module")
def loaded_after() -> dict[str, list[str]]:
    """{step: heavy libraries loaded once it (and the lighter steps before it) was imported}."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *(step for step, _ in STEPS)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("step, forbidden", STEPS, ids=[step for step, _ in STEPS])
def test_a_step_loads_only_the_libraries_its_work_needs(loaded_after, step, forbidden):
    assert not forbidden & set(loaded_after[step]), f"importing {step} loaded {sorted(forbidden & set(loaded_after[step]))}"



def test_a_checkpoints_version_stamp_names_torchvision_without_loading_it():
    """Every saved checkpoint carries versions() (the prune step and every train save one): it reads
    torchvision's installed version instead of importing it."""
    probe = ("import json, sys; from pipeline_lib.versions import versions; "
             "print(json.dumps({'stamp': versions(), 'loaded': 'torchvision' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    import torchvision

    assert not result["loaded"]
    assert result["stamp"]["torchvision"] == torchvision.__version__.split("+")[0]
