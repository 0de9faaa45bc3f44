"""Sweeps and iterations through the real snakemake, continuing the tiny run (a copy of it)."""
import json
import shutil

import pandas as pd
import pytest
import torch

from pipeline_lib.io import sha256_file

from conftest import run_snakemake, write_config

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training


def _continue_tiny_run(tiny_run, tmp_path, **prune):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    return workdir, write_config(tmp_path / "config.yaml", prune=prune)


def test_two_ratio_sweep_reuses_the_chain_and_compares_ratios(tiny_run, tmp_path):
    workdir, config = _continue_tiny_run(tiny_run, tmp_path, sweep=[0.3, 0.6, {"flops": 0.2}])
    before = {p: p.stat().st_mtime_ns for p in (workdir / "results").glob("*.pt")}
    run_snakemake(workdir, config)
    assert {p: p.stat().st_mtime_ns for p in (workdir / "results").glob("*.pt")} == before

    table = pd.read_csv(workdir / "results/sweep/summary.csv")
    assert list(table["point"]) == ["r=0.3", "r=0.6", "flops=0.2"]  # by FLOPs, most first
    assert list(table["ratio"])[:2] == [0.3, 0.6] and pd.isna(table["ratio"].iloc[2])
    assert "3 sweep points -> results/plots/pareto.png" in (workdir / "results/logs/report.log").read_text()
    assert table["flops"].iloc[1] < table["flops"].iloc[0]  # a larger ratio costs less
    target = json.loads((workdir / "results/sweep/flops0.2/prune.json").read_text())
    assert target["after"]["flops"] <= 0.2 * target["before"]["flops"] and target["search"]["probes"]
    for ratio in ("0.3", "0.6"):
        lineage = workdir / f"results/sweep/r{ratio}"
        report = json.loads((lineage / "prune.json").read_text())
        assert report["ratio_requested"] == float(ratio)
        assert report["checkpoint"] == "results/sparse.pt"
        meta = torch.load(lineage / "pruned_finetuned.pt", weights_only=True)["meta"]
        assert meta["parent"] == sha256_file(lineage / "pruned.pt")
        assert json.loads((lineage / "metrics/pruned_finetuned.json").read_text())["stage"] == \
            f"sweep/r{ratio}/pruned_finetuned"
    assert (workdir / "results/plots/sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_two_iterations_slim_the_slim_model_again(tiny_run, tmp_path):
    workdir, config = _continue_tiny_run(tiny_run, tmp_path, iterations=2, ratio=[0.3, 0.3])
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


def test_a_flops_target_prunes_to_it_and_the_report_says_so(tiny_run, tmp_path):
    workdir, config = _continue_tiny_run(tiny_run, tmp_path, target={"flops": 0.6})
    run_snakemake(workdir, config)
    results = workdir / "results"
    report = json.loads((results / "prune.json").read_text())
    assert report["after"]["flops"] <= 0.6 * report["before"]["flops"] and report["ratio_requested"] is None
    search = report["search"]
    assert search["goal"] == {"flops": 0.6 * report["before"]["flops"]} and search["threshold"] == report["threshold"]
    assert [p for p in search["probes"] if p["threshold"] == report["threshold"]][0]["flops"] == report["after"]["flops"]
    assert list(json.loads((results / "prune_search.json").read_text()).values())[0]["threshold"] == report["threshold"]
    assert "target: flops 0.6" in (results / "summary.md").read_text()
    assert "Nothing to be done" in run_snakemake(workdir, config, "-n").stdout


def test_drop_blocks_removes_whole_residual_blocks_through_the_chain(tiny_run, tmp_path):
    # Two tiny sparsity epochs leave every |γ| near 1: only a ratio close to 1 puts a block's inner
    # channels all below the threshold (the 3x detector chain of config/detector_speedup.yaml dropped 3 of 7).
    workdir, config = _continue_tiny_run(tiny_run, tmp_path, ratio=0.99, drop_blocks=True)
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
