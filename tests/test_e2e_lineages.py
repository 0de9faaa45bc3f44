"""Sweeps and prune targets through the real snakemake, continuing the tiny run (a copy of it).
Iterations and dropped blocks: test_e2e_reslimming.py."""
import json

import pandas as pd
import pytest
import torch

from pipeline_lib.io import sha256_file

from conftest import continue_tiny_run, run_snakemake

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training


def test_two_ratio_sweep_reuses_the_chain_and_compares_ratios(tiny_run, tmp_path):
    workdir, config = continue_tiny_run(tiny_run, tmp_path, sweep=[0.3, 0.6, {"flops": 0.2}])
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


def test_a_flops_target_prunes_to_it_and_the_report_says_so(tiny_run, tmp_path):
    workdir, config = continue_tiny_run(tiny_run, tmp_path, target={"flops": 0.6})
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
