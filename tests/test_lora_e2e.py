"""A LoRA finetune through the real snakemake and CLI, continuing the tiny run (a copy of it)."""
import collections
import json
import shlex
import shutil
import subprocess
import sys

import onnx
import pytest
import torch

from pipeline_lib.io import sha256_file

from conftest import REPO, one_error_line, run_snakemake, write_config

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training


@pytest.fixture(scope="module")
def lora_run(tiny_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    workdir = tmp / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    before = {p.name: p.stat().st_mtime_ns for p in (workdir / "results").glob("*.pt")}
    config = write_config(tmp / "config.yaml", stages={"finetune": {"lora": {"r": 4}}})
    # The files the tests read: the INT8 model, ONNX evaluations, PyTorch latency and report of a
    # merged checkpoint (an ordinary one by then) would be five more jobs. The adapter is not named:
    # the finetune that gained `lora:` must be retrained for the metrics and the ONNX file alone.
    run_snakemake(workdir, config, "results/metrics/pruned_finetuned.json", "results/export/pruned_finetuned.onnx")
    return workdir, before


def test_only_the_finetune_reruns_and_publishes_a_merged_checkpoint_and_its_adapter(lora_run, tiny_run):
    workdir, before = lora_run
    results = workdir / "results"
    after = {p.name: p.stat().st_mtime_ns for p in results.glob("*.pt")}
    assert {k: after[k] for k in ("baseline.pt", "sparse.pt", "pruned.pt")} == \
        {k: before[k] for k in ("baseline.pt", "sparse.pt", "pruned.pt")}
    assert after["pruned_finetuned.pt"] != before["pruned_finetuned.pt"]

    adapter = torch.load(results / "pruned_finetuned.lora.pt", weights_only=True)
    assert adapter["base_sha256"] == sha256_file(results / "pruned.pt")
    assert adapter["lora"]["r"] == 4 and adapter["layers"]

    merged = torch.load(results / "pruned_finetuned.pt", weights_only=True)
    full = torch.load(tiny_run / "results/pruned_finetuned.pt", weights_only=True)
    assert not any("lora" in k for k in merged["state_dict"])
    assert {k: v.shape for k, v in merged["state_dict"].items()} == {k: v.shape for k, v in full["state_dict"].items()}

    metrics = json.loads((results / "metrics/pruned_finetuned.json").read_text())
    training = metrics["training"]
    assert 0 < training["trainable_params"] < training["params"] == metrics["params"]
    assert training["adapter_bytes"] == (results / "pruned_finetuned.lora.pt").stat().st_size
    assert training["peak_mem_mb"] > 0 and training["seconds_per_epoch"] > 0


def test_the_merged_model_exports_without_an_adapter_in_the_graph(lora_run, tiny_run):
    workdir, _ = lora_run
    report = json.loads((workdir / "results/export/pruned_finetuned.json").read_text())
    assert report["parity"]["max_abs_diff"] <= 1e-3  # the export step checked it against PyTorch

    def op_counts(path):
        return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)

    # the same operators as a fully finetuned model of the same widths: nothing left of the adapters
    assert op_counts(workdir / "results/export/pruned_finetuned.onnx") == \
        op_counts(tiny_run / "results/export/pruned_finetuned.onnx")


def _cli(workdir, *args):
    return subprocess.run([sys.executable, "-m", "pipeline_lib", *args], cwd=workdir, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_merge_by_hand_reproduces_the_published_checkpoint_and_refuses_another_base(lora_run):
    workdir, _ = lora_run
    documented = next(line for line in (REPO / "docs/LORA.md").read_text().splitlines()
                      if line.startswith("python -m pipeline_lib merge-lora "))  # the line the docs print
    proc = _cli(workdir, *shlex.split(documented)[3:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    by_hand = torch.load(workdir / "merged.pt", weights_only=True)["state_dict"]
    published = torch.load(workdir / "results/pruned_finetuned.pt", weights_only=True)["state_dict"]
    assert by_hand.keys() == published.keys()
    assert all(torch.equal(by_hand[k], published[k]) for k in published)

    proc = _cli(workdir, "merge-lora", "--base", "results/sparse.pt", "--adapter", "results/pruned_finetuned.lora.pt",
                "--out", "wrong.pt")
    assert "this adapter belongs to the base results/pruned.pt" in one_error_line(proc)
    assert not (workdir / "wrong.pt").exists()


def test_the_benchmark_script_compares_full_and_lora_finetunes(tiny_run, tmp_path):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run, symlinks=True)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/lora.py"), str(run), "--configfile",
                           str(REPO / "config/test.yaml"), "--ranks", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in proc.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["none (pruned)", "full", "LoRA r=2"]
    lora = dict(zip([c.strip() for c in proc.stdout.splitlines()[0].strip("|").split("|")], rows[2]))
    assert 0 < float(lora["trainable share"]) < 1 and float(lora["adapter KiB"]) > 0
    assert (tmp_path / "tiny-lora-r2/results/pruned_finetuned.lora.pt").is_file()
