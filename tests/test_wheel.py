"""slimflow as a user installs it: a wheel built from this checkout, installed into a fresh virtual
environment, run from an empty folder with no checkout on sys.path (docs/DEPLOY.md).

The wheel is built offline (`pip wheel --no-deps --no-build-isolation`, with this environment's
setuptools) from a copy of the files git knows, so no build/ folder lands in the checkout. The
fresh environment sees this environment's packages (torch and the rest) through a .pth line, after
its own site-packages, so the wheel's pipeline_lib is the one imported; this environment's
editable install of slimflow is not active there (its finder's .pth is not processed).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pipeline_lib import __version__
from pipeline_lib.checkpoint import load_checkpoint
from pipeline_lib.io import read_json

from conftest import REPO
from test_docs_commands import fresh_copy

pytestmark = pytest.mark.e2e  # builds and installs a wheel, runs the installed CLI

CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def overlay(config: Path) -> list[Path]:
    """The files a shipped config is checked with, as its header comment says it is used: the
    command it shows (`--configfile config/a.yaml config/b.yaml`), else the config it is laid over."""
    header = "".join(re.match(r"(#[^\n]*\n|\s*\n)*", config.read_text()).group(0))
    for files in re.findall(r"--configfile ((?:config/[\w.]+\.yaml ?)+)", header):
        if f"config/{config.name}" in files.split():
            return [REPO / name for name in files.split()]
    base = re.search(r"laid over (?:the main experiment|(config/[\w.]+\.yaml))", header)
    if base and base.group(1):
        return [REPO / base.group(1), config]
    return [config]


def user_env(venv: Path) -> dict[str, str]:
    """The user's shell: the fresh environment first on PATH, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The fresh environment with the wheel installed (its folder)."""
    base = tmp_path_factory.mktemp("wheel")
    source = fresh_copy(base / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(base / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel, = (base / "dist").glob("slimflow-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = Path(subprocess.run([venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # This environment's packages, after the fresh one's own (a .pth line appends to sys.path).
    (site / "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([venv / "bin/python", "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=300, env=user_env(venv))
    return venv


def slimflow(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["slimflow", *args], cwd=cwd, env=user_env(venv), capture_output=True, text=True,
                          timeout=600)


def test_the_installed_package_is_the_wheel(installed, tmp_path):
    code = "import pipeline_lib, sys; print(pipeline_lib.__file__); print(*sys.path, sep='\\n')"
    proc = subprocess.run([installed / "bin/python", "-c", code], cwd=tmp_path, env=user_env(installed),
                          capture_output=True, text=True, check=True)
    origin, *path = proc.stdout.splitlines()
    assert Path(origin).is_relative_to(installed / "lib"), origin
    assert "site-packages" in Path(origin).parts, origin
    assert not any((tmp_path / p).resolve() == REPO for p in path), "the checkout is on sys.path"
    assert slimflow(installed, tmp_path, "--version").stdout.strip() == f"slimflow {__version__}"
    assert slimflow(installed, tmp_path, "--help").stdout.startswith("usage: slimflow ")


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_shipped_config_checks(installed, tmp_path, config):
    files = overlay(config)
    proc = slimflow(installed, tmp_path, "check-config", *[a for f in files for a in ("--config", str(f))])
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"ok: .* \((detection|reid|pose|diffusion), \d+ keys set\)", proc.stdout.strip()), proc.stdout
    assert str(config) in proc.stdout


def test_overlays_are_found():
    assert overlay(REPO / "config/diffusion_lora.yaml") == [REPO / "config/diffusion.yaml",
                                                            REPO / "config/diffusion_lora.yaml"]
    assert overlay(REPO / "config/reid_speedup.yaml")[0] == REPO / "config/reid.yaml"
    assert overlay(REPO / "config/int8_auto.yaml")[0] == REPO / "config/config.yaml"
    assert overlay(REPO / "config/pose.yaml") == [REPO / "config/pose.yaml"]


def test_a_tiny_chain_evaluates_and_predicts_from_the_wheel(installed, tmp_path):
    """prepare-dataset, one epoch of baseline, evaluate and predict: the installed CLI alone."""
    config = shutil.copy(REPO / "config/test.yaml", tmp_path / "test.yaml")
    run = tmp_path / "run"
    run.mkdir()
    for args in (["prepare-dataset"], ["train", "--stage", "baseline", "--set", "train.epochs=1"],
                 ["evaluate", "--stage", "baseline"]):
        proc = slimflow(installed, run, *args, "--config", str(config))
        assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    assert read_json(run / "results/metrics/baseline.json")["stage"] == "baseline"
    versions = load_checkpoint(run / "results/baseline.pt")["meta"]["versions"]
    assert versions["git"] is None and versions["slimflow"] == __version__  # an installed wheel has no commit
    val = next((run / "results/data").rglob("images/val"))
    proc = slimflow(installed, run, "predict", "--model", "results/baseline.pt", "--source", str(val), "--out", "pred")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "pred/predictions.json").stat().st_size > 0
    assert any(p.suffix in (".jpg", ".png") for p in (run / "pred").rglob("*")), "no image drawn"
