"""The tiny baseline trained by two processes, by whichever launcher; and the comparison of two runs.

    root = tiny_ddp_root(tmp)                          # config.yaml (nprocs 2) + a prepared dataset
    train_cmd(root, "ref")                             # python -m pipeline_lib train ... --results root/ref
    assert_same_run(root / "ref", root / "torchrun")  # state_dicts bit for bit, the CSV but its times
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

from pipeline_lib import steps
from pipeline_lib.config import load_config

from conftest import REPO

TIMED = ("time_s",)  # CSV columns that measure the machine, not the run
TIMED_META = ("training",)  # meta entries of the same kind (seconds per epoch, peak memory)


def tiny_ddp_root(root: Path, epochs: int = 2) -> Path:
    """A config with two processes and `epochs` epochs, and its dataset under root/data.json."""
    cfg = yaml.safe_load((REPO / "config/test.yaml").read_text())
    cfg["train"].update(nprocs=2, epochs=epochs)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    cfg = load_config(root / "config.yaml")
    steps.prepare_dataset(dataset_cfg=cfg["dataset"], family=cfg["task"], seed=cfg["seed"],
                          manifest_path=root / "dataset.json")
    return root


def results(root: Path, name: str) -> Path:
    """root/name: a results folder holding the prepared dataset."""
    r = root / name
    (r / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "dataset.json", r / "data/dataset.json")
    return r


def train_cmd(root: Path, name: str) -> list[str]:
    """The CLI's train step of the baseline into root/name."""
    return [sys.executable, "-m", "pipeline_lib", "train", "--config", str(root / "config.yaml"),
            "--results", str(results(root, name)), "--stage", "baseline"]


def torchrun_cmd(root: Path, name: str, nproc: int = 2) -> list[str]:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    return [torchrun, "--standalone", f"--nproc-per-node={nproc}", "-m", *train_cmd(root, name)[2:]]


def run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def assert_same_run(a: Path, b: Path) -> None:
    """Two results folders trained the same baseline: equal weights and buffers, equal CSV rows
    (but the timings), equal metadata (but the machine's measurements)."""
    ca, cb = (torch.load(r / "baseline.pt", weights_only=True) for r in (a, b))
    sa, sb = ca["state_dict"], cb["state_dict"]
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    ma, mb = ({k: v for k, v in c["meta"].items() if k not in TIMED_META} for c in (ca, cb))
    assert ma == mb
    da, db = (pd.read_csv(r / "train/baseline.csv").drop(columns=list(TIMED)) for r in (a, b))
    pd.testing.assert_frame_equal(da, db, check_exact=True)
    assert not (b / "work/baseline/last.pt").exists()


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (torchrun starts its ranks in sessions of their own,
    so killing torchrun's process group leaves them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process it started; reap the launcher."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
