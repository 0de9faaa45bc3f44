"""Two-process DDP training on CPU (gloo), launched from the step itself, as under Snakemake or SLURM."""
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from pipeline_lib import steps
from pipeline_lib.checkpoint import load_checkpoint, save_checkpoint
from pipeline_lib.config import load_config, stage_config
from pipeline_lib.errors import UserError
from pipeline_lib.io import read_json, sha256_file
from pipeline_lib.tasks import get_task, validation_settings

from conftest import REPO

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny config with two DDP processes and its prepared dataset."""
    root = tmp_path_factory.mktemp("ddp")
    cfg = yaml.safe_load((REPO / "config/test.yaml").read_text())
    cfg["train"].update(nprocs=2, epochs=4, warmup_epochs=0, val_interval=2)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    cfg = load_config(root / "config.yaml")
    steps.prepare_dataset(dataset_cfg=cfg["dataset"], family=cfg["task"], seed=cfg["seed"],
                          manifest_path=root / "results/data/dataset.json")
    return root, cfg


def _spec(root, cfg, **train):
    r = root / "results"
    return steps.StageSpec(label="baseline", train_cfg={**stage_config(cfg, "baseline"), **train},
                           model_cfg=cfg["model"], family=cfg["task"], validation=validation_settings(cfg), seed=cfg["seed"],
                           device="cpu",
                           manifest_path=r / "data/dataset.json", out_checkpoint=r / "baseline.pt",
                           out_csv=r / "train/baseline.csv", workdir=r / "work/baseline")


def test_two_process_training_learns_and_publishes_a_loadable_checkpoint(tiny):
    root, cfg = tiny
    steps.train_stage(**vars(_spec(root, cfg)))
    history = pd.read_csv(root / "results/train/baseline.csv")
    loss = history.filter(like="train/").sum(axis=1)
    assert len(history) == 4 and loss.iloc[-1] < loss.iloc[0]
    ckpt = load_checkpoint(root / "results/baseline.pt", family="detection")
    assert ckpt["meta"]["config"]["nprocs"] == 2
    result = steps.evaluate_stage(label="baseline", checkpoint=root / "results/baseline.pt",
                                  manifest_path=root / "results/data/dataset.json", eval_cfg=cfg["evaluate"],
                                  device="cpu", seed=0, out_metrics=root / "results/metrics/baseline.json")
    assert 0.0 <= result["metrics"]["mAP50_95"] <= 1.0
    assert not (root / "results/work/baseline/last.pt").exists()


def test_ddp_finetune_distills_from_an_unwrapped_teacher_in_each_process(tiny):
    root, cfg = tiny
    task, manifest = get_task("detection"), read_json(root / "results/data/dataset.json")
    arch = task.arch(cfg["model"], manifest)
    torch.manual_seed(1)  # another network than the student's
    save_checkpoint(root / "teacher.pt", task.build_model(arch), arch,
                    {"stage": "sparse", "imgsz": cfg["model"]["imgsz"], "names": manifest["names"], "config_hash": "t"})
    r = root / "results"
    spec = dataclasses.replace(_spec(root, cfg, epochs=2, distill={"teacher": "sparse", "weight": 1.0, "temperature": 2.0}),
                               label="pruned_finetuned", teacher_checkpoint=root / "teacher.pt",
                               out_checkpoint=r / "distilled.pt", out_csv=r / "train/distilled.csv",
                               workdir=r / "work/distilled")
    steps.train_stage(**vars(spec))
    assert load_checkpoint(r / "distilled.pt")["meta"]["distill"]["teacher_sha256"] == sha256_file(root / "teacher.pt")
    assert (pd.read_csv(r / "train/distilled.csv")["train/distill"] > 0).all()


def test_batch_size_must_split_evenly_over_processes(tiny):
    root, cfg = tiny
    with pytest.raises(UserError, match="train.batch_size=9 is the total over train.nprocs=2"):
        steps.train_stage(**vars(_spec(root, cfg, batch_size=9)))


def test_killed_ddp_training_resumes_from_the_last_epoch(tiny, tmp_path):
    root, cfg = tiny
    r = tmp_path / "results"
    (r / "data").mkdir(parents=True)
    (r / "data/dataset.json").write_bytes((root / "results/data/dataset.json").read_bytes())
    command = [sys.executable, "-m", "pipeline_lib", "train", "--config", str(root / "config.yaml"),
               "--results", str(r), "--stage", "baseline"]
    proc = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stderr=subprocess.PIPE, text=True)
    last = r / "work/baseline/last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
    proc.wait()
    epoch = torch.load(last, weights_only=True)["epoch"]
    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {last} after epoch {epoch}/4" in rerun.stderr
    assert load_checkpoint(r / "baseline.pt")["meta"]["epoch"] >= 1
