"""A distilled finetune through the real snakemake (via benchmarks/distill.py) and the CLI, on a
copy of the finished tiny run."""
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from pipeline_lib.checkpoint import load_checkpoint
from pipeline_lib.io import sha256_file
from pipeline_lib.provenance import provenance

from conftest import REPO, one_error_line, run_snakemake

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training


@pytest.fixture(scope="module")
def distilled(tiny_run, tmp_path_factory):
    """A copy of the tiny run (its plain finetune and metrics), then the benchmark's distilled finetune of it."""
    run = tmp_path_factory.mktemp("distill") / "tiny"
    shutil.copytree(tiny_run, run, symlinks=True)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/distill.py"), str(run), "--configfile",
                           str(REPO / "config/test.yaml"), "--teachers", "sparse"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, run.parent / "tiny-distill-sparse", proc


def test_the_benchmark_prints_plain_against_distilled(distilled):
    _, _, proc = distilled
    lines = proc.stdout.splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[0] for r in rows] == ["none (pruned)", "plain", "distill from sparse (w=1, T=2)"]
    assert "s/epoch" in lines[0] and "adapter KiB" not in lines[0]


def test_the_finetune_names_its_teacher_and_logs_the_distill_term(distilled):
    _, dest, proc = distilled
    results = dest / "results"
    meta = load_checkpoint(results / "pruned_finetuned.pt")["meta"]
    teacher = meta["distill"]
    assert teacher["teacher"] == "sparse" and teacher["teacher_path"] == "results/sparse.pt"
    assert teacher["teacher_sha256"] == sha256_file(results / "sparse.pt")
    assert teacher["teacher_config_hash"] == load_checkpoint(results / "sparse.pt")["meta"]["config_hash"]
    assert meta["config"]["distill"] == {"teacher": "sparse", "temperature": 2.0, "weight": 1.0}

    history = pd.read_csv(results / "train/pruned_finetuned.csv")
    assert (history["train/distill"] > 0).all() and {"train/box", "train/obj", "train/cls"} <= set(history)
    log = (results / "logs/train-pruned_finetuned.log").read_text()
    assert "distilling from results/sparse.pt" in log

    record = provenance([results / n for n in ("baseline.pt", "sparse.pt", "pruned.pt", "pruned_finetuned.pt")])
    assert record["artifacts"][str(results / "pruned_finetuned.pt")]["teacher"]["path"] == str(results / "sparse.pt")


def _dry_run(workdir, config):
    proc = run_snakemake(workdir, config, "results/pruned_finetuned.pt", "-n", "--forcerun", "results/pruned_finetuned.pt")
    job = proc.stdout + proc.stderr
    return job[job.index("rule train:"):]  # the finetune's job: its input line comes first


def test_the_teacher_is_an_input_only_with_distill_on(distilled):
    run, dest, _ = distilled  # (which lineage gets which teacher: test_distill.py, without snakemake)
    assert "input: results/pruned.pt, results/sparse.pt," in _dry_run(dest, dest / "finetune.yaml")
    plain = _dry_run(run, REPO / "config/test.yaml").split("\n")
    assert next(line for line in plain if "input:" in line).strip() == "input: results/pruned.pt, results/data/dataset.json"


def test_the_cli_finds_the_teacher_under_results_or_says_what_writes_it(distilled, tmp_path):
    run, _, _ = distilled
    (run / "results/baseline.pt").rename(run / "results/baseline.moved")
    try:
        proc = subprocess.run([sys.executable, "-m", "pipeline_lib", "train", "--config", str(REPO / "config/test.yaml"),
                               "--set", "stages.finetune.distill.teacher=baseline", "--stage", "pruned_finetuned",
                               "--init", "results/pruned.pt"], cwd=run, capture_output=True, text=True, timeout=300)
    finally:
        (run / "results/baseline.moved").rename(run / "results/baseline.pt")
    assert "results/baseline.pt: not found (written by `python -m pipeline_lib train`" in one_error_line(proc)
