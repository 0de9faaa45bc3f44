"""The tiny chain's FP32 and INT8 models give the same outputs on an aarch64 CPU (qemu-aarch64
user-mode emulation, Debian's arm64 python3 and PyPI's aarch64 numpy/onnxruntime, built once by
benchmarks/arm_env.sh into a cache folder) as on this x86 CPU, within the export's parity tolerance."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline_lib.config import defaults
from pipeline_lib.export import load_onnx

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "onnx_run.py"
TOLERANCE = {k: defaults()["export"][k] for k in ("parity_tol", "parity_rtol")}  # the x86 export's own check


def _arm_python() -> Path:
    """benchmarks/arm_env.sh's aarch64 python3 (built on first use, about a minute); skip where it cannot be."""
    have_tools = shutil.which("qemu-aarch64") and shutil.which("debootstrap")
    if not have_tools and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("qemu-aarch64 and debootstrap are not installed, and installing them needs root with apt-get "
                    "(.ci/run installs qemu-user and debootstrap where it is root)")
    if os.geteuid() != 0:
        pytest.skip("the aarch64 python runs qemu in a private mount namespace (unshare --mount), which needs root")
    built = subprocess.run(["bash", str(REPO / "benchmarks" / "arm_env.sh")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    return Path(built.stdout.split()[-1]) / "python3"


@pytest.mark.e2e
@pytest.mark.parametrize("model", ["pruned_finetuned.onnx", "pruned_finetuned.int8.onnx"])
def test_exported_models_match_x86_on_aarch64(tiny_run, tmp_path, model):
    arm_python = _arm_python()
    path = tiny_run / "results" / "export" / model
    loaded = load_onnx(path)
    images = loaded.task.example_input(loaded.imgsz, 2, generator=torch.Generator().manual_seed(0))
    np.savez(tmp_path / "inputs.npz", images.numpy())
    outputs = {}
    for cpu, python in (("x86", sys.executable), ("arm", str(arm_python))):
        ran = subprocess.run([python, str(RUN), str(path), str(tmp_path / "inputs.npz"), str(tmp_path / f"{cpu}.npz")],
                             capture_output=True, text=True)
        assert ran.returncode == 0, f"{cpu}: {ran.stderr[-2000:]}"
        outputs[cpu] = np.load(tmp_path / f"{cpu}.npz")
    arm_machine = subprocess.run([str(arm_python), "-c", "import platform; print(platform.machine())"],
                                 capture_output=True, text=True).stdout.strip()
    assert arm_machine == "aarch64"
    for key in outputs["x86"].files:
        x86, arm = outputs["x86"][key], outputs["arm"][key]
        assert x86.shape == arm.shape and np.isfinite(arm).all()
        print(f"{model} {key}: max |arm - x86| {np.abs(arm - x86).max():.3g} (max |x86| {np.abs(x86).max():.3g})")
        np.testing.assert_allclose(arm, x86, atol=TOLERANCE["parity_tol"], rtol=TOLERANCE["parity_rtol"])
