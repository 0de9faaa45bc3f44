"""workflow/envs: what `snakemake --sdm conda` needs, checked without conda (its channels are out of reach).

Every rule names an environment file that exists; each file is valid YAML on conda-forge with
pinned majors for python, pytorch and torchvision and every runtime dependency of pyproject.toml
(and of its `tb` extra), each with pyproject's bounds; the post-deploy script installs this
checkout's pipeline_lib into the environment it runs in, and says what to do where there is none.
(`snakemake --lint`, which flags a rule without `conda:`, is checked in test_e2e_detection.py.)
"""
from __future__ import annotations

import pytest
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from conftest import REPO

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

RULES = REPO / "workflow" / "rules"
ENVS = REPO / "workflow" / "envs"
# pyproject name -> conda-forge name; None: not needed inside the environment.
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base", "snakemake": None,
               "snakemake-executor-plugin-slurm": None}


def rule_envs() -> dict[str, Path]:
    """rule name -> the environment file its `conda:` directive names."""
    envs = {}
    for smk in sorted(RULES.glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M)[1:]:
            name = re.match(r"rule (\w+):", block).group(1)
            conda = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", block, re.M)
            assert conda, f"{smk.name}: rule {name} has no conda: directive"
            envs[name] = (RULES / conda.group(1)).resolve()
    return envs


def conda_specs(env: dict) -> dict[str, str]:
    """package name -> version spec of the conda (not pip) dependencies."""
    specs = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", dep).groups()
            specs[name] = spec.strip()
    return specs


def test_every_rule_names_an_existing_environment():
    envs = rule_envs()
    assert {"prepare_dataset", "train", "prune", "evaluate", "report"} <= set(envs)
    for rule, path in envs.items():
        assert path.parent == ENVS and path.is_file(), f"rule {rule}: {path}"


def test_environments_are_conda_forge_with_pinned_majors():
    for path in sorted(ENVS.glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert env["channels"] == ["conda-forge", "nodefaults"], path.name
        specs = conda_specs(env)
        for name, major in (("python", "3"), ("pytorch", "2"), ("torchvision", "0")):
            # "=3.11" pins major and minor; ">=2.5,<3" pins the major, ">=2.5,<2.15" a range inside it.
            spec = specs[name]
            assert re.fullmatch(rf"={major}(\.\d+)*(\.\*)?(=\S+)?", spec) or \
                re.search(rf"<({int(major) + 1}\b|{major}\.\d)", spec), \
                f"{path.name}: {name} {spec!r} does not pin major {major}"


def test_environment_has_every_runtime_dependency():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ENVS / "slimflow.yaml").read_text())
    conda = conda_specs(env)
    pip = {_name(d) for entry in env["dependencies"] if isinstance(entry, dict) for d in entry["pip"]}
    for dep in deps:
        wanted = CONDA_NAMES.get(_name(dep), _name(dep))
        if wanted is not None:
            assert wanted in conda or _name(dep) in pip, f"{dep} missing from slimflow.yaml"


def test_shared_dependencies_have_the_same_bounds():
    """pyproject.toml and slimflow.yaml agree on every package both name (conda's `>=2.5,<2.15` is
    pip's), so `pip install slimflow` and `--sdm conda` allow the same versions."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pyproject = {_name(r): Requirement(r).specifier
                 for r in project["dependencies"] + project["optional-dependencies"]["tb"]}
    env = yaml.safe_load((ENVS / "slimflow.yaml").read_text())
    conda = {name: SpecifierSet(spec.replace(" ", "")) for name, spec in conda_specs(env).items()
             if name in {CONDA_NAMES.get(n, n) for n in pyproject}}  # python's "=3.11" is conda's spelling
    pip = {_name(r): Requirement(r).specifier for e in env["dependencies"] if isinstance(e, dict) for r in e["pip"]}
    compared = 0
    for name, spec in pyproject.items():
        wanted = CONDA_NAMES.get(name, name)
        theirs = conda.get(wanted, pip.get(name))
        if wanted is not None and theirs is not None:
            assert theirs == spec, f"{name}: pyproject.toml {spec or 'any'}, slimflow.yaml {theirs or 'any'}"
            compared += 1
    assert compared >= 17 and "tensorboard" in conda, compared


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def test_post_deploy_script_installs_this_checkout(tmp_path):
    # A fresh virtual environment stands in for the conda environment: the script must install
    # pipeline_lib from the repository however it is called (Snakemake passes its own path).
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The build backend the conda environment lists (setuptools >= 70.1 builds wheels by itself).
    subprocess.run([python, "-m", "pip", "install", "--quiet", "setuptools>=70.1"], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    script = os.path.relpath(ENVS / "slimflow.post-deploy.sh", tmp_path)
    subprocess.run(["bash", script], cwd=tmp_path, env=env, check=True, capture_output=True)
    origin = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('pipeline_lib').origin)"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(origin) == REPO / "pipeline_lib" / "__init__.py"


def test_post_deploy_script_without_a_checkout_says_what_to_set(tmp_path):
    # A module fetched with github(...): Snakemake runs a copy of the script from a temporary file.
    script = tmp_path / "a" / "b" / "slimflow.post-deploy.sh"
    script.parent.mkdir(parents=True)
    shutil.copy(ENVS / "slimflow.post-deploy.sh", script)
    env = {k: v for k, v in os.environ.items() if k != "SLIMFLOW_SOURCE"}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "set SLIMFLOW_SOURCE" in proc.stderr, proc.stderr
