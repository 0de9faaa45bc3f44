"""The tiny diffusion config through the real snakemake: judge, chain, export and INT8 included."""
import json
import shutil
import subprocess
import sys

import onnx
import pytest
import torch

from pipeline_lib.io import sha256_file
from pipeline_lib.tasks.diffusion.idx import FILES, read_idx

from conftest import REPO, chain_run, one_error_line, run_snakemake, write_config

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

STAGES = ("baseline", "sparse", "pruned", "pruned_finetuned")


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory):
    return chain_run(tmp_path_factory, "test_diffusion.yaml")


def test_digits_are_written_as_idx_and_judged_by_a_trained_classifier(diffusion_run):
    manifest = json.loads((diffusion_run / "results/data/dataset.json").read_text())
    assert manifest["task"] == "diffusion" and manifest["names"] == [str(d) for d in range(10)]
    for split, (images, labels) in FILES.items():
        pixels = read_idx(diffusion_run / "results/data/digits" / images, 3)
        assert pixels.shape == (manifest["counts"][split]["images"], 16, 16)
        assert sorted(set(read_idx(diffusion_run / "results/data/digits" / labels, 1).tolist())) == list(range(10))
    judge = json.loads((diffusion_run / "results/data/evaluator.json").read_text())
    assert judge["val_acc"] > 0.5 and judge["epochs"] <= judge["epoch_cap"] == 10  # chance is 0.1
    assert judge["val_acc"] == pytest.approx(max(judge["val_acc_history"]), abs=1e-6)  # the best epoch's, kept
    assert list(judge["val_acc_per_class"]) == manifest["names"]


def test_every_stage_is_scored_by_sampling(diffusion_run):
    for name in [*STAGES, "onnx_fp32", "onnx_int8"]:
        result = json.loads((diffusion_run / f"results/metrics/{name}.json").read_text())
        assert result["task"] == "diffusion" and list(result["metrics"]) == ["cond_acc", "fid", "val_loss"]
        assert 0 <= result["metrics"]["cond_acc"] <= 1 and result["metrics"]["fid"] >= 0
        assert result["network_calls"] == 5  # DDIM in ddim_steps: a sample costs 5 calls of the network
    baseline = json.loads((diffusion_run / "results/metrics/baseline.json").read_text())
    assert baseline["fitness"] == baseline["metrics"]["cond_acc"]
    samples = json.loads((diffusion_run / "results/metrics/baseline.predictions.json").read_text())
    assert samples["labels"] == [d for d in range(10) for _ in range(2)]  # grid_per_class of each digit
    assert torch.tensor(samples["samples"]).shape == (20, 16, 16)
    history = (diffusion_run / "results/train/baseline.csv").read_text().splitlines()
    assert "train/l1" in history[0] and "metrics/val_loss" in history[0]  # no judge while training
    for stage in STAGES:
        assert (diffusion_run / f"results/plots/evaluation/samples_{stage}.png").stat().st_size > 0
    summary = (diffusion_run / "results/summary.md").read_text()
    assert "per output (ms)" in summary and "One output takes 5 calls of the network" in summary
    ceiling = summary[summary.index("## The evaluator's ceiling"):]
    assert f"the judge reads the val split's digits at {judge_acc(diffusion_run):.3f}" in ceiling
    header = next(line for line in ceiling.splitlines() if line.startswith("| digit"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["digit", "judge (val digits)", *STAGES]
    page = (diffusion_run / "results/report.rst").read_text()
    assert f"reads the val split's digits at {judge_acc(diffusion_run):.3f}" in page


def judge_acc(run) -> float:
    return json.loads((run / "results/data/evaluator.json").read_text())["val_acc"]


def test_chain_prunes_the_unet_and_keeps_the_fixed_widths(diffusion_run):
    metrics = {s: json.loads((diffusion_run / f"results/metrics/{s}.json").read_text()) for s in STAGES}
    assert metrics["pruned"]["flops"] < metrics["baseline"]["flops"]
    assert metrics["pruned_finetuned"]["params"] == metrics["pruned"]["params"]
    base = torch.load(diffusion_run / "results/baseline.pt", weights_only=True)["state_dict"]
    slim = torch.load(diffusion_run / "results/pruned_finetuned.pt", weights_only=True)
    assert slim["meta"]["parent"] == sha256_file(diffusion_run / "results/pruned.pt")
    fixed = [k for k in base if k.endswith((".wq.weight", ".wk.weight", ".wv.weight")) or k == "out.weight"]
    assert fixed and all(slim["state_dict"][k].shape[0] == base[k].shape[0] for k in fixed)
    assert any(slim["state_dict"][k].shape != v.shape for k, v in base.items())
    proto = onnx.load(str(diffusion_run / "results/export/pruned_finetuned.onnx"))
    assert [i.name for i in proto.graph.input] == ["x_t", "t", "label"]
    assert [o.name for o in proto.graph.output] == ["noise"]


def test_the_cli_scores_a_stage_as_the_workflow_did(diffusion_run, tmp_path):
    """`python -m pipeline_lib evaluate` finds the judge and the manifest the rules pass, and
    reproduces the chain's metrics (and those of its ONNX model) to the digit."""
    results = tmp_path / "results"
    shutil.copytree(diffusion_run / "results", results)
    for command in (["evaluate", "--stage", "pruned_finetuned"], ["evaluate-onnx", "--precision", "fp32"]):
        proc = subprocess.run([sys.executable, "-m", "pipeline_lib", *command, "--config",
                               str(REPO / "config/test_diffusion.yaml"), "--results", str(results)],
                              cwd=diffusion_run, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("pruned_finetuned", "onnx_fp32"):
        chain = json.loads((diffusion_run / f"results/metrics/{name}.json").read_text())
        again = json.loads((results / f"metrics/{name}.json").read_text())
        assert again["metrics"] == chain["metrics"] and "cond_acc" in again["metrics"]


def test_a_truncated_idx_file_stops_snakemake_in_one_line(tmp_path):
    import numpy as np
    from pipeline_lib.tasks.diffusion.idx import write_idx

    mnist = tmp_path / "mnist"
    rng = np.random.default_rng(0)
    for split, (images, labels) in FILES.items():
        write_idx(mnist / images, rng.integers(0, 256, (20, 16, 16), dtype=np.uint8))
        write_idx(mnist / labels, (np.arange(20) % 10).astype(np.uint8))
    val = mnist / FILES["val"][0]
    val.write_bytes(val.read_bytes()[:-7])
    config = write_config(tmp_path / "c.yaml", base="test_diffusion.yaml", dataset={"path": str(mnist)})
    line = one_error_line(run_snakemake(tmp_path, config, "-n", check=False))
    assert "t10k-images-idx3-ubyte" in line and "7 bytes" in line, line
