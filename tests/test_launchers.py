"""Training under torchrun joins torchrun's process group: the tiny baseline trained by
`torchrun --nproc-per-node 2` (gloo) equals the step's own 2-process launch bit for bit, and a
killed torchrun run resumes from its last epoch to the same weights.

Bit for bit needs the same threads per process: torchrun sets OMP_NUM_THREADS=1 for each of
several processes, the built-in launch keeps torch's default, so the reference sets it too.
"""
import os
import subprocess
import time

import pytest
import torch

from launch_runs import assert_same_run, kill_tree, run, tiny_ddp_root, torchrun_cmd, train_cmd
from pipeline_lib.engine import distributed

pytestmark = pytest.mark.e2e  # trains

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny baseline, two processes of the built-in launch (root/ref)."""
    root = tiny_ddp_root(tmp_path_factory.mktemp("launch"))
    run(train_cmd(root, "ref"), root, ENV)
    return root


def test_torchrun_equals_the_builtin_two_process_launch(reference):
    proc = run(torchrun_cmd(reference, "torchrun"), reference, ENV)
    assert_same_run(reference / "ref", reference / "torchrun")
    assert proc.stderr.count("best epoch") == 1  # rank 0 alone publishes and logs


def test_killed_torchrun_training_resumes_to_the_same_weights(reference):
    mark = reference / "frozen"
    # the 4th optimizer step is the first of epoch 2 (3 batches an epoch): last.pt holds epoch 1
    env = {**ENV, "SLIMFLOW_FAILPOINT": "step@4", "SLIMFLOW_FAILPOINT_MARK": str(mark)}
    command = torchrun_cmd(reference, "killed")
    proc = subprocess.Popen(command, cwd=reference, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not mark.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert mark.exists(), f"the failpoint was never reached (torchrun exit {proc.poll()})"
    kill_tree(proc)  # torchrun and both ranks (each in a session of its own)
    last = reference / "killed/work/baseline/last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    rerun = run(command, reference, ENV)
    assert f"resuming from {last} after epoch 1/2" in rerun.stderr
    assert_same_run(reference / "ref", reference / "killed")


def test_launcher_environments_are_recognised():
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2"}
    assert distributed.external_world(torchrun) == distributed.World("torchrun", 3, 4, 1)
    srun = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8"}
    assert distributed.external_world(srun) == distributed.World("srun", 5, 8, 1)
    # alone: srun -n1 (snakemake's job steps), an sbatch script (no step), torchrun with one process
    assert distributed.external_world({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}) is None
    assert distributed.external_world({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) is None
    assert distributed.external_world({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert distributed.external_world({}) is None
