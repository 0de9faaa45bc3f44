"""slimflow as a Snakemake module (docs/DEPLOY.md): a user's own folder with its config/, its
profile and a Snakefile saying `module slimflow: snakefile: ...; config: config`, one rule
overridden, the module a local path to this checkout. Results, logs and Snakemake's state land in
the user's folder; the rules' scripts, environments and report captions are found beside the module."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.e2e  # runs the real snakemake and a tiny chain

# The user's Snakefile: docs/module/Snakefile (the module a local path to this checkout) with one
# rule overridden, as docs/DEPLOY.md shows it.
TEMPLATE = REPO / "docs/module/Snakefile"
OVERRIDE = """

# One rule of the module changed: evaluation in one thread with a memory request of its own.
use rule evaluate from slimflow as slimflow_evaluate with:
    threads: 1
    resources:
        mem_mb=1234,
"""


def user_snakefile() -> str:
    text = TEMPLATE.read_text()
    assert '"../../slimflow/Snakefile"' in text
    return text.replace('"../../slimflow/Snakefile"', f'"{REPO / "Snakefile"}"') + OVERRIDE


def snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    return subprocess.run([str(Path(sys.executable).parent / "snakemake"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture
def project(tmp_path) -> Path:
    """The user's folder: config/config.yaml (the tiny experiment), profiles/default, workflow/Snakefile."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config/test.yaml", tmp_path / "config/config.yaml")
    shutil.copytree(REPO / "profiles/default", tmp_path / "profiles/default")
    (tmp_path / "workflow").mkdir()
    (tmp_path / "workflow/Snakefile").write_text(user_snakefile())
    return tmp_path


def job_blocks(dry_run: str, rule: str) -> list[str]:
    """The dry run's text of each job of `rule`."""
    return [b for b in re.split(r"\n(?=\[|rule |localrule )", dry_run) if re.match(rf"(local)?rule {rule}:", b)]


def test_dry_run_uses_the_users_config_profile_and_override(project):
    proc = snakemake(project, "-n")  # no --cores: the user's profiles/default says `cores: all`
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Config file(s): ['config/config.yaml']" in proc.stdout + proc.stderr  # the user's
    evaluate = job_blocks(proc.stdout, "slimflow_evaluate")
    assert len(evaluate) == 4 and all("mem_mb=1234" in b for b in evaluate), proc.stdout[-3000:]
    assert all("threads: 2" in b for b in job_blocks(proc.stdout, "slimflow_train")), "other rules unchanged"
    assert "slimflow_report" in proc.stdout and "slimflow_all" in proc.stdout


def test_a_mistake_in_the_users_config_names_the_users_file(project):
    config = project / "config/config.yaml"
    config.write_text(config.read_text().replace("train:\n", "train:\n  epoch: 3\n", 1))
    proc = snakemake(project, "-n")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert re.search(r"slimflow config error: config/config\.yaml:\d+: train\.epoch: unknown key", proc.stderr), \
        proc.stderr[-2000:]


def test_tiny_chain_runs_into_the_users_folder(project):
    before = sorted(p.name for p in REPO.iterdir())
    proc = snakemake(project, "--cores", "2", "results/pruned_finetuned.pt")
    assert proc.returncode == 0, proc.stderr[-6000:]
    for name in ("pruned_finetuned.pt", "pruned.pt", "prune.json", "logs/train-pruned_finetuned.log",
                 "benchmarks/prune.tsv", "data/dataset.json"):
        assert (project / "results" / name).is_file(), name
    assert (project / ".snakemake").is_dir()
    assert sorted(p.name for p in REPO.iterdir()) == before, "the run wrote into the module's checkout"
