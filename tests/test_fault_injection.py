"""SIGKILL at three precise points of the tiny chain (mid-epoch, during a checkpoint write, during
validation), rerun with --rerun-incomplete each time: the chain completes, each stage resumes from its
last completed epoch, and every checkpoint and metrics file equals the uninterrupted run's
(same seed, CPU): resume is exact and the chain is deterministic."""
import pytest
import json
import os
import signal
import subprocess
import time

import torch

from conftest import REPO, run_snakemake, snakemake_cmd

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

TARGET = "results/pruned_finetuned.pt"
# (failpoint, the stage it freezes, the epoch that stage must resume after). The counters restart
# with every rerun; the tiny config has 3 batches per epoch and 2 epochs per stage.
KILLS = [
    ("step@5", "baseline", 1),               # 2nd batch of the baseline's epoch 2
    ("write last.pt@2", "sparse", 1),        # sparse writing its epoch-2 resume state (baseline resumed: 1 write)
    ("evaluate@2", "pruned_finetuned", 1),   # the finetune validating after epoch 2 (sparse resumed: 1 evaluation)
]


def _run_until_frozen(workdir, config, failpoint, mark):
    env = {**os.environ, "SLIMFLOW_FAILPOINT": failpoint, "SLIMFLOW_FAILPOINT_MARK": str(mark)}
    proc = subprocess.Popen(snakemake_cmd(workdir, config, "--rerun-incomplete", TARGET), env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while not mark.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert mark.exists(), f"failpoint {failpoint} was never reached (snakemake exit {proc.poll()})"
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the frozen job, like a lost node
    proc.wait()


MEASURED = ("peak_mem_mb", "seconds_per_epoch")
STAGES = ("baseline", "sparse", "pruned", "pruned_finetuned")


def test_three_kills_resume_and_give_the_uninterrupted_model(tiny_run, tmp_path):
    config = REPO / "config/test.yaml"
    for i, (failpoint, stage, resume_epoch) in enumerate(KILLS):
        _run_until_frozen(tmp_path, config, failpoint, tmp_path / f"frozen-{i}")
        assert not (tmp_path / f"results/{stage}.pt").exists()
        last = torch.load(tmp_path / f"results/work/{stage}/last.pt", weights_only=True)  # whole, never half-written
        assert last["epoch"] == resume_epoch
        run_snakemake(tmp_path, config, "--unlock")
    # On to every stage's metrics, compared below; not the default target: its exports, INT8 and
    # report read checkpoints asserted equal to the tiny run's, which tests them.
    run_snakemake(tmp_path, config, "--rerun-incomplete", *(f"results/metrics/{stage}.json" for stage in STAGES))

    for _, stage, epoch in KILLS:
        log = (tmp_path / f"results/logs/train-{stage}.log").read_text()
        assert f"resuming from results/work/{stage}/last.pt after epoch {epoch}/2" in log, stage
    for stage in STAGES:  # determinism: every artifact, every metric
        resumed = torch.load(tmp_path / f"results/{stage}.pt", weights_only=True)["state_dict"]
        reference = torch.load(tiny_run / f"results/{stage}.pt", weights_only=True)["state_dict"]
        assert resumed.keys() == reference.keys()
        assert all(torch.equal(resumed[k], reference[k]) for k in reference), stage
        metrics = [json.loads((root / f"results/metrics/{stage}.json").read_text()) for root in (tmp_path, tiny_run)]
        for m in metrics:  # what the training cost is measured (time, memory), not computed: it may differ
            for key in MEASURED:
                m.get("training", {}).pop(key, None)
        assert metrics[0] == metrics[1], stage
