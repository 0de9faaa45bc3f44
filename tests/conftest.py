"""Shared helpers: run the real snakemake on a config in a temporary working directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake_cmd(workdir: Path, configfile: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(configfile), "--cores", "2", *args]


def run_snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_cmd(workdir, configfile, *args), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def write_config(path: Path, base: str = "test.yaml", **sections) -> Path:
    """A copy of config/<base> with some sections updated (dicts are merged one level deep)."""
    cfg = yaml.safe_load((REPO / "config" / base).read_text())
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny detection config run once through the default target (every stage evaluated)."""
    workdir = tmp_path_factory.mktemp("tiny")
    run_snakemake(workdir, REPO / "config" / "test.yaml")
    return workdir


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct BN scales, shifts and statistics (as after training), so pruning has something to
    choose and masked-vs-pruned comparisons are not trivially equal. Frozen biases (BNNeck) stay."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g))
                if m.bias.requires_grad:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()
