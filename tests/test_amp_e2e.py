"""The tiny detection chain with `train.amp: true` on the CPU (bf16 autocast) through snakemake:
baseline, sparse, prune, finetune and every evaluation, with finite metrics."""
import json
import math

import pytest
import torch

from conftest import run_snakemake, write_config

pytestmark = pytest.mark.e2e  # runs the real snakemake


def test_tiny_chain_trains_and_evaluates_under_cpu_autocast(tmp_path):
    config = write_config(tmp_path / "config.yaml", train={"amp": True})
    run_snakemake(tmp_path, config, "results/pruned_finetuned.pt", "results/metrics/pruned_finetuned.json",
                  "results/metrics/baseline.json")
    ckpt = torch.load(tmp_path / "results/pruned_finetuned.pt", weights_only=True)
    assert ckpt["meta"]["config"]["amp"] is True
    for stage in ("baseline", "pruned_finetuned"):
        metrics = json.loads((tmp_path / f"results/metrics/{stage}.json").read_text())["metrics"]
        assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
