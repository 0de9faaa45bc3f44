"""profiles/slurm: parses without SLURM, and runs the tiny chain on a real single-node SLURM.

The real run installs Debian's slurm-wlm and munge when they are missing (root with apt-get),
starts a private cluster (tests/slurm/cluster.py), submits every step through sbatch with
profiles/slurm extended by tests/slurm/profile, and stops the daemons afterwards, pass or fail.
Without root or apt-get it is skipped with the reason; as root, a failed install fails the test.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, SNAKEMAKE

sys.path.insert(0, str(REPO / "tests" / "slurm"))
import cluster  # noqa: E402
from launch_runs import assert_same_run, run, tiny_ddp_root, train_cmd  # noqa: E402

PROFILE = REPO / "profiles" / "slurm"
TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
TARGET = "results/pruned_finetuned.pt"


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900):
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(REPO / "config" / "test.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def job_resources(output: str) -> dict[str, list[str]]:
    """rule name -> the `resources:` line of each of its jobs in snakemake's dry-run output."""
    found: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        rule = re.match(r"rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and resources:
            found.setdefault(rule.group(1), []).append(resources.group(1))
    return found


def test_slurm_profile_parses_and_puts_the_gpu_on_training_only(tmp_path):
    proc = snakemake(tmp_path, "--profile", str(PROFILE), "-n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resources = job_resources(proc.stdout + proc.stderr)
    assert len(resources["train"]) == 3
    for line in resources["train"]:
        assert "gpu=1" in line and "cpus_per_gpu=8" in line and "mem_mb=32000" in line and "runtime=720" in line
    assert all("gpu" not in line for rule in ("prepare_dataset", "prune", "evaluate") for line in resources[rule])
    assert not (tmp_path / "results").exists()


def test_test_profile_extends_slurm_profile_without_gpus(tmp_path):
    proc = snakemake(tmp_path, "--profile", str(PROFILE), "--profile", str(TEST_PROFILE), "-n", TARGET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resources = job_resources(proc.stdout + proc.stderr)
    assert sorted(resources) == ["prepare_dataset", "prune", "train"]
    for line in (line for lines in resources.values() for line in lines):
        assert "slurm_partition=local" in line and "gpu" not in line


def test_local_profile_parses(tmp_path):
    proc = snakemake(tmp_path, "--profile", str(REPO / "profiles" / "local"), "-n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "train" in job_resources(proc.stdout + proc.stderr)


def test_ddp_profile_asks_for_tasks_on_nodes_and_srun_for_training(tmp_path):
    proc = snakemake(tmp_path, "--profile", str(PROFILE), "--profile", str(REPO / "profiles" / "slurm-ddp"), "-n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resources = job_resources(proc.stdout + proc.stderr)
    for line in resources["train"]:
        assert "nodes=2" in line and "tasks_per_node=4" in line and "mpi=srun" in line and "gres=gpu:4" in line
    assert all("mpi" not in line for line in resources["evaluate"])


def test_launch_settings_read_the_train_rules_resources():
    from pipeline_lib.steps.train import launch_settings
    assert launch_settings({"mpi": "srun", "nodes": 2, "tasks_per_node": 4}) == {"srun": {"ntasks": 8, "nodes": 2}}
    assert launch_settings({"mpi": "srun", "tasks": 2}) == {"srun": {"ntasks": 2, "nodes": 1}}
    assert launch_settings({"gpu": 1, "tasks": 1}) == {}  # one process: today's single-GPU job


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node SLURM; its daemons are stopped when the module's tests are done."""
    if missing := cluster.missing_commands():
        if blocker := cluster.install_blocker():
            pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing) and {blocker}")
        cluster.install()  # as root with apt-get: a failure here fails the test, it does not skip
    if reason := cluster.unavailable_reason():
        pytest.skip(reason)
    # Not under pytest's tmp folders, which a concurrent pytest run may prune while this one runs.
    root = Path(tempfile.mkdtemp(prefix="slimflow-slurm-"))
    cluster.start(root)
    try:
        yield root
    finally:
        cluster.stop(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.e2e
def test_tiny_chain_runs_through_sbatch(slurm_cluster, tmp_path):
    # Jobs run `python -m snakemake` and the scripts with this interpreter; sbatch passes the
    # submitting environment on (--export=ALL), so the venv's bin goes first on PATH as a user's would.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = snakemake(tmp_path, "--profile", str(PROFILE), "--profile", str(TEST_PROFILE), TARGET, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:] + _tails(tmp_path / ".snakemake/slurm_logs", tmp_path / "results/logs",
                                                      slurm_cluster / "log")

    # One sbatch per long step (prepare_dataset, train x3), each with the SLURM job id in the log;
    # prune is a localrule (seconds), so it runs in the submitting process.
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", out)
    assert len(job_ids) == 4, out
    assert "localrule prune" in out
    # SLURM's own record (squeue keeps finished jobs for MinJobAge): every job COMPLETED here.
    states = dict(line.split("|") for line in subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%T"], capture_output=True, text=True, check=True).stdout.split())
    for job_id, slurm_log in job_ids:
        assert states[job_id] == "COMPLETED"
        assert "--executor slurm-jobstep" in Path(slurm_log).read_text()  # the step ran inside the job

    ckpt = torch.load(tmp_path / TARGET, weights_only=True)
    assert ckpt["format"] == "slimflow/ckpt-v1" and ckpt["meta"]["stage"] == "pruned_finetuned"


@pytest.mark.e2e
def test_srun_two_tasks_equal_the_builtin_two_process_launch(slurm_cluster, tmp_path):
    """`srun -n 2 python -m pipeline_lib train ...`: each task joins the srun step's group (gloo)."""
    root = tiny_ddp_root(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread a process in both runs: bit for bit
    run(train_cmd(root, "ref"), root, env)
    proc = run(["srun", "-n", "2", "-p", "local", "-t", "5", *train_cmd(root, "srun")], root, env)
    assert_same_run(root / "ref", root / "srun")
    assert proc.stderr.count("best epoch") == 1  # rank 0 alone publishes and logs


@pytest.mark.e2e
def test_train_rule_starts_two_srun_tasks_inside_its_sbatch_job(slurm_cluster, tmp_path):
    """The train rule with `mpi: srun, tasks: 2` (as profiles/slurm-ddp asks): one sbatch job whose
    step starts its two ranks with srun; the baseline equals the built-in two-process launch's."""
    profile = tmp_path / "ddp-profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump({"set-threads": {"train": 1}, "set-resources": {"train": {
        "mpi": "srun", "tasks": 2, "cpus_per_task": 1, "mem_mb": 2000, "runtime": 15}}}))
    (tmp_path / "ref").mkdir()
    root = tiny_ddp_root(tmp_path / "ref")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    run(train_cmd(root, "ref"), root, env)
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path / "run"), "--configfile",
           str(root / "config.yaml"), "--profile", str(PROFILE), "--profile", str(TEST_PROFILE), "--profile",
           str(profile), "results/baseline.pt"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:] + _tails(tmp_path / "run/results/logs")
    assert "baseline: 2 training processes (srun tasks)" in (tmp_path / "run/results/logs/train-baseline.log").read_text()
    assert_same_run(root / "ref", tmp_path / "run/results")


def _tails(*folders: Path) -> str:
    """The end of every log under the folders: SLURM job logs, step logs, daemon logs."""
    return "".join(f"\n--- {p}\n{p.read_text(errors='replace')[-1500:]}"
                   for folder in folders for p in sorted(folder.rglob("*.log")))
