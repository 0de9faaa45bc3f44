"""Iterative slimming and dropped residual blocks through the real snakemake, continuing the tiny run
(a copy of it). Apart from test_e2e_lineages.py so that the two workers can share these chains."""
import json

import pandas as pd
import pytest
import torch

from pipeline_lib.io import sha256_file

from conftest import continue_tiny_run, run_snakemake

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training


def test_two_iterations_slim_the_slim_model_again(tiny_run, tmp_path):
    workdir, config = continue_tiny_run(tiny_run, tmp_path, iterations=2, ratio=[0.3, 0.3])
    run_snakemake(workdir, config)
    results = workdir / "results"
    first = torch.load(results / "iter/1/pruned_finetuned.pt", weights_only=True)
    sparse = torch.load(results / "sparse.pt", weights_only=True)
    assert sparse["meta"]["parent"] == sha256_file(results / "iter/1/pruned_finetuned.pt")
    flops = [json.loads((results / p).read_text())["after"]["flops"] for p in ("iter/1/prune.json", "prune.json")]
    assert flops[1] < flops[0]  # the second iteration cuts the already slim model further
    assert first["meta"]["stage"] == "iter/1/pruned_finetuned"
    table = pd.read_csv(results / "summary.csv")
    assert list(table["stage"])[:5] == ["baseline", "sparse", "pruned", "pruned_finetuned", "iter/1/pruned_finetuned"]


def test_drop_blocks_removes_whole_residual_blocks_through_the_chain(tiny_run, tmp_path):
    # Two tiny sparsity epochs leave every |γ| near 1: only a ratio close to 1 puts a block's inner
    # channels all below the threshold (session 9's 3x detector chain dropped 3 of 7).
    workdir, config = continue_tiny_run(tiny_run, tmp_path, ratio=0.99, drop_blocks=True)
    run_snakemake(workdir, config)
    results = workdir / "results"
    report = json.loads((results / "prune.json").read_text())
    dropped = report["dropped_blocks"]
    assert dropped and all(b.startswith("stage") and ".m." in b for b in dropped)  # backbone bottlenecks
    for stage in ("pruned", "pruned_finetuned"):  # the finetuned model keeps its parent's architecture
        assert torch.load(results / f"{stage}.pt", weights_only=True)["arch"]["dropped"] == dropped
    for name in ("onnx_fp32", "onnx_int8"):  # export, parity and INT8 of the shallower network
        assert json.loads((results / f"metrics/{name}.json").read_text())["metrics"]["mAP50_95"] >= 0
    assert f"residual blocks dropped (prune.drop_blocks): {len(dropped)}" in (results / "summary.md").read_text()
