"""`python -m pipeline_lib`: every step a subcommand with --help, --set overrides validated like the
file, user mistakes in one line, and `compare` over runs."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline_lib.__main__ import COMMANDS
from pipeline_lib.overrides import apply_settings
from pipeline_lib.errors import UserError

from conftest import REPO

REPO_BIN = Path(sys.executable).parent  # the installed `slimflow` script of this environment

STEPS = {"prepare-dataset", "train", "prune", "evaluate", "export", "quantize", "evaluate-onnx", "latency", "report",
         "predict", "compare"}


def cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "pipeline_lib", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_every_step_is_a_subcommand():
    assert STEPS <= set(COMMANDS)


def test_set_overrides_a_key_and_is_validated_like_the_file():
    cfg = apply_settings(REPO / "config/test.yaml", ["train.epochs=5", "prune.ratio=0.3", "evaluate.conf_thres=0.25"])
    assert (cfg["train"]["epochs"], cfg["prune"]["ratio"], cfg["evaluate"]["conf_thres"]) == (5, 0.3, 0.25)
    with pytest.raises(UserError, match=r"train\.epoch: unknown key .*--set train\.epoch=3"):
        apply_settings(REPO / "config/test.yaml", ["train.epoch=3"])
    with pytest.raises(UserError, match=r"train\.epochs: -1 is less than the minimum of 1"):
        apply_settings(REPO / "config/test.yaml", ["train.epochs=-1"])
    with pytest.raises(UserError, match=r"--set epochs: expected KEY=VALUE"):
        apply_settings(REPO / "config/test.yaml", ["epochs"])


@pytest.mark.e2e
@pytest.mark.parametrize("command", sorted(STEPS))
def test_help(command):
    proc = cli(command, "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("args, message", [
    (["train", "--stage", "foo"], r"argument --stage: invalid choice: 'foo'"),
    (["evaluate"], r"results/data/dataset.json: not found \(written by `python -m pipeline_lib prepare-dataset`"),
    (["train", "--set", "train.epoch=3"], r"train\.epoch: unknown key"),
    (["predict", "--model", "nothere.onnx", "--source", ".", "--out", "x"], r"nothere.onnx: no such model file"),
    (["compare", "nothere"], r"nothere: no results/summary.csv"),
    (["frobnicate"], r"invalid choice: 'frobnicate'"),
])
def test_user_mistakes_end_in_one_line(tmp_path, args, message):
    shutil.copytree(REPO / "config", tmp_path / "config")
    proc = cli(*args, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode in (1, 2) and len(lines) == 1, proc.stderr
    assert lines[0].startswith("slimflow error: ")
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.e2e
def test_compare_prints_and_plots_two_runs(tiny_run, tmp_path):
    """Two run folders (the tiny run and a copy of its results with another headline number)."""
    other = tmp_path / "other"
    shutil.copytree(tiny_run / "results", other / "results", ignore=shutil.ignore_patterns("work", "*.pt", "*.onnx"))
    table = pd.read_csv(other / "results/summary.csv")
    table["mAP50_95"] += 0.5
    table.to_csv(other / "results/summary.csv", index=False)
    proc = cli("compare", str(tiny_run), str(other), "--plot", str(tmp_path / "c.png"), "--csv", str(tmp_path / "c.csv"))
    assert proc.returncode == 0, proc.stderr
    assert tiny_run.name in proc.stdout and "other" in proc.stdout and "mAP50_95" in proc.stdout
    both = pd.read_csv(tmp_path / "c.csv")
    assert list(both["run"].unique()) == [tiny_run.name, "other"]
    assert (tmp_path / "c.png").stat().st_size > 10_000


@pytest.mark.e2e
def test_version_and_the_program_name_the_user_typed():
    from pipeline_lib import __version__

    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"slimflow {__version__}", proc.stderr
    assert cli("--help").stdout.startswith("usage: python -m pipeline_lib ")
    script = subprocess.run([str(REPO_BIN / "slimflow"), "--help"], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert script.returncode == 0 and script.stdout.startswith("usage: slimflow "), script.stderr


@pytest.mark.e2e
def test_check_config_says_what_it_checked():
    proc = cli("check-config", "--config", "config/test.yaml", "--config", "config/ratio05.yaml", "--set", "seed=3")
    assert proc.returncode == 0, proc.stderr
    # test.yaml sets 17 keys; ratio05.yaml adds prune.target (its prune.ratio and --set's seed are in test.yaml too)
    assert proc.stdout.strip() == "ok: config/test.yaml + config/ratio05.yaml (detection, 19 keys set)"
    assert cli("check-config", "--config", "config/test_reid.yaml").stdout.startswith("ok: config/test_reid.yaml (reid, ")


@pytest.mark.e2e
@pytest.mark.parametrize("args", [["compare", "a", "b"], ["--help"]])
def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path, args):
    """`compare a b | head -1`: stdout is a real pipe whose reader has already gone (as `head` has
    after its line), so every write meets a closed pipe."""
    from test_report_plots import TABLE

    for run in ("a", "b"):
        (tmp_path / run / "results").mkdir(parents=True)
        TABLE.to_csv(tmp_path / run / "results/summary.csv", index=False)
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run([sys.executable, "-m", "pipeline_lib", *args], stdout=write_end, stderr=subprocess.PIPE,
                          text=True, cwd=tmp_path, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr  # 128 + SIGPIPE, as the shell reports for `yes`
