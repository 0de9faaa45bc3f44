"""Shared helpers: run the real snakemake on a config in a temporary working directory."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# The suite runs in two pytest-xdist workers (pyproject.toml): OpenMP threads that spin while
# waiting would take the cores from the other worker (an epoch ran 13x slower that way).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402  (torch's own dependency)
import yaml  # noqa: E402
from torch import nn  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake_cmd(workdir: Path, configfile: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(configfile), "--cores", "2", *args]


def run_snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_cmd(workdir, configfile, *args), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def chain_run(tmp_path_factory, config: str, *targets: str) -> Path:
    """config/<config> run once through snakemake (to `targets`, or the default target) in a folder
    of its own: the body of a test module's fixture."""
    workdir = tmp_path_factory.mktemp(Path(config).stem)
    run_snakemake(workdir, REPO / "config" / config, *targets)
    return workdir


def write_config(path: Path, base: str = "test.yaml", **sections) -> Path:
    """A copy of config/<base> with some sections updated (dicts are merged one level deep)."""
    cfg = yaml.safe_load((REPO / "config" / base).read_text())
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(cfg))
    return path


def continue_tiny_run(tiny_run: Path, tmp_path: Path, **prune) -> tuple[Path, Path]:
    """A copy of the tiny run (its files' times kept: nothing done reruns) and a copy of
    config/test.yaml with `prune` updated, to run snakemake on."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    return workdir, write_config(tmp_path / "config.yaml", prune=prune)


# Files whose parametrized cases are independent processes on cheap (or session-wide) fixtures.
SPREAD = ("test_bad_inputs.py", "test_bad_datasets.py", "test_docs_commands.py")


def _unit(nodeid: str) -> str:
    """What one worker takes at once: the test's file, or the case itself for a SPREAD file."""
    path = nodeid.split("::", 1)[0]
    return nodeid if Path(path).name in SPREAD and "[" in nodeid else path


def pytest_xdist_make_scheduler(config, log):
    """Workers take whole test files, so a file's module fixtures (a chain run through snakemake)
    are built once; but the cases of SPREAD files (bad inputs, documented commands: seconds to
    minutes of their own processes each) go one by one to whichever worker is free. (xdist's
    `loadgroup` cannot say this: under pytest 9 its group marks no longer reach the scheduler.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndSpreadCases(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # units in collection order: pytest_collection_modifyitems's
    return FilesAndSpreadCases(config, log)


def pytest_collection_modifyitems(config, items):
    """Long units first, short ones last, so the two workers finish together: the first file that
    needs the shared `tiny_run` (its worker builds it), then the end-to-end files that do not need
    it (the other worker is busy meanwhile instead of waiting on its lock), then the other
    end-to-end files, the quick ones, and last the one-by-one SPREAD cases."""
    def file(item) -> str:
        return item.nodeid.split("::", 1)[0]

    tiny = list(dict.fromkeys(file(it) for it in items if "tiny_run" in it.fixturenames))
    e2e = {file(it) for it in items if it.get_closest_marker("e2e")}

    def rank(item) -> int:
        path = file(item)
        if _unit(item.nodeid) != path:
            return 4
        if tiny and path == tiny[0]:
            return 0
        if path not in e2e:
            return 3
        return 2 if path in tiny else 1

    items.sort(key=rank)  # stable: a file's tests stay together and in order


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny detection config run once through the default target (every stage evaluated),
    once per test session: the first worker that needs it builds it, the other waits and reuses it.
    Tests read it, or copy it before running snakemake in it."""
    # Under xdist every worker's basetemp sits in the session's folder; without it (-n 0) the
    # basetemp is the session's own (its parent holds every earlier session's: not to be reused).
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    workdir = shared / "tiny"
    with FileLock(str(shared / "tiny.lock")):
        if not (workdir / "results/summary.md").exists():
            workdir.mkdir(exist_ok=True)
            run_snakemake(workdir, REPO / "config" / "test.yaml")
    return workdir


@pytest.fixture(scope="session")  # the bad-input cases are spread over the workers (SPREAD)
def valid(tmp_path_factory) -> Path:
    """The valid detection layout the bad-input cases start from (bad_inputs.valid_layout), once per worker."""
    from bad_inputs import valid_layout

    return valid_layout(tmp_path_factory.mktemp("valid") / "repo")


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct BN scales, shifts and statistics (as after training), so pruning has something to
    choose and masked-vs-pruned comparisons are not trivially equal. Frozen biases (BNNeck) stay."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g))
                if m.bias.requires_grad:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


@contextlib.contextmanager
def progress_records():
    """The records of the "slimflow.progress" logger while the block runs (caplog's handler sits on
    the root logger, which a step's logging setup cuts "slimflow" off from)."""
    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    records: list[logging.LogRecord] = []
    handler, logger = Keep(logging.INFO), logging.getLogger("slimflow.progress")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def snapshot(results: Path) -> dict[str, str]:
    """sha256 of every file under results/ (checkpoints included)."""
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file()}


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `slimflow error:` line of a failed run (asserting there is exactly one, and no traceback)."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "Traceback" not in out and "this would have run code" not in out, out[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("slimflow error:", "slimflow config error:"))]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


def corrupt_tensor_bytes(path: Path) -> None:
    """4 KiB of random bytes inside the largest tensor's record of a torch file: torch.load does not notice."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:  # past the local file header (30 bytes + name + extra) to the middle of the data
        f.seek(info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2 - 2048)
        f.write(os.urandom(4096))


class Interrupt(Exception):
    """Raised by KillInEpoch: a training stopped the way a SIGKILL would stop it."""


class KillInEpoch:
    """Engine hook that stops training at the second optimizer step of (0-based) `epoch`."""

    def __init__(self, epoch: int):
        self.epoch, self.steps = epoch, 0

    def before_step(self, model, epoch, epochs):
        if epoch == self.epoch:
            self.steps += 1
            if self.steps == 2:
                raise Interrupt
