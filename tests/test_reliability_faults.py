"""Faults, not mistakes: a failed rerun must not cost a finished run's results (issue 13, item 2),
corruption inside a checkpoint or resume state is detected on load (item 3), and a full or
read-only disk is one line naming the file while the previous artifact survives (item 5).
Real snakemake, real files, a real small file system; nothing under test is mocked."""
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from pipeline_lib.checkpoint import save_checkpoint
from pipeline_lib.errors import UserError
from pipeline_lib.io import atomic_path
from pipeline_lib.provenance import provenance
from pipeline_lib.tasks.detection.model import YOLODetector
from pipeline_lib.torchfile import CHECKSUM_KEY, load_sealed, save_sealed

from conftest import REPO, corrupt_tensor_bytes, one_error_line, randomize_bn, run_snakemake, snakemake_cmd, snapshot

ARCH = {"family": "detection", "name": "yolov5n", "kwargs": {"nc": 2, "scale": "n"}}


# --- item 3: corruption -------------------------------------------------------------------------

def _checkpoint(path: Path, seed: int = 0, **meta) -> Path:
    model = randomize_bn(YOLODetector(nc=2, scale="n"), seed)
    save_checkpoint(path, model, ARCH, {"stage": "baseline", "imgsz": 64, **meta})
    return path


def test_random_bytes_in_a_tensor_fail_the_checksum(tmp_path):
    path = _checkpoint(tmp_path / "baseline.pt")
    corrupt_tensor_bytes(path)
    torch.load(path, weights_only=True)  # torch itself loads it without complaint
    with pytest.raises(UserError, match="corrupted: its contents do not match the checksum") as info:
        load_sealed(path)
    assert str(path) in str(info.value)


def test_resume_state_is_sealed_too(tmp_path):
    state = {"run_id": "r", "epoch": 2, "model": nn.Linear(3, 2).state_dict(), "rng": [1, (2, 3)]}
    save_sealed(tmp_path / "last.pt", state)
    loaded = load_sealed(tmp_path / "last.pt")
    assert loaded["epoch"] == 2 and torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    raw["epoch"] = 3  # edited by hand without resealing
    torch.save(raw, tmp_path / "last.pt")
    with pytest.raises(UserError, match="delete it to start this stage over"):
        load_sealed(tmp_path / "last.pt", remedy="delete it to start this stage over")


def test_a_checkpoint_without_checksum_still_loads_and_says_so(tmp_path, caplog):
    path = _checkpoint(tmp_path / "old.pt")
    raw = torch.load(path, weights_only=True)
    del raw[CHECKSUM_KEY]
    torch.save(raw, path)  # as slimflow wrote it before checksums
    with caplog.at_level(logging.INFO, logger="slimflow"):
        assert load_sealed(path)["meta"]["imgsz"] == 64
    assert "without a checksum" in caplog.text


def test_provenance_is_checked_against_the_parent_file(tmp_path):
    baseline = _checkpoint(tmp_path / "baseline.pt")
    from pipeline_lib.io import sha256_file

    sparse = _checkpoint(tmp_path / "sparse.pt", seed=1, parent=sha256_file(baseline), parent_path=str(baseline))
    record = provenance([baseline, sparse])
    assert record["artifacts"][str(sparse)]["parent"] == str(baseline)
    _checkpoint(baseline, seed=2)  # baseline.pt replaced after sparse.pt was made from it
    with pytest.raises(UserError, match=r"sparse\.pt: made from .*baseline\.pt with sha256 .* now has sha256"):
        provenance([baseline, sparse])


# --- item 5: full disk, read-only file system ---------------------------------------------------

@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    """A real tmpfs of `size` mounted at `path` (root only; skipped where mounting is not allowed)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(fs: Path, leave: int) -> None:
    """Fill the file system until only `leave` bytes are free."""
    free = shutil.disk_usage(fs).free - leave
    with open(fs / "filler", "wb") as f:
        f.write(b"\0" * max(free, 0))


def _prune_cli(cwd: Path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_lib", "prune", "--config", str(config), "--results", "results"],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def _prunable_results(results: Path) -> None:
    """results/sparse.pt to prune and a previous results/pruned.pt that must survive."""
    _checkpoint(results / "sparse.pt")
    shutil.copy(results / "sparse.pt", results / "pruned.pt")
    (results / "prune.json").write_text("{}\n")


def _prune_config(path: Path) -> Path:
    cfg = yaml.safe_load((REPO / "config/test.yaml").read_text())
    cfg["prune"] = {"ratio": 0.5, "on_infeasible": "clamp"}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.e2e
def test_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_old_file(tmp_path):
    config = _prune_config(tmp_path / "config.yaml")
    with small_filesystem(tmp_path / "fs", "24m") as fs:
        _prunable_results(fs / "results")
        _fill(fs, leave=256 * 1024)  # the new pruned.pt (a few MB) cannot fit
        before = snapshot(fs / "results")
        line = one_error_line(_prune_cli(fs, config))
        assert line == ("slimflow error: results/pruned.pt: cannot write (No space left on device); free space on "
                        "that file system (the previous file is unchanged)"), line
        assert snapshot(fs / "results") == before  # no temporary file left either
        (fs / "filler").unlink()
        assert _prune_cli(fs, config).returncode == 0  # space freed: the same command succeeds


@pytest.mark.e2e
def test_read_only_file_system_is_one_line_naming_the_file(tmp_path):
    config = _prune_config(tmp_path / "config.yaml")
    with small_filesystem(tmp_path / "fs", "24m") as fs:
        _prunable_results(fs / "results")
        before = snapshot(fs / "results")
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        line = one_error_line(_prune_cli(fs, config))
        assert line.startswith("slimflow error: results/pruned.pt: cannot write (Read-only file system)"), line
        assert snapshot(fs / "results") == before


def test_permission_denied_in_a_write_is_one_line_naming_the_target(tmp_path):
    # root passes permission checks, so the OSError comes from the body as a non-root write would raise it
    (tmp_path / "m.json").write_text("old")
    with pytest.raises(UserError) as info, atomic_path(tmp_path / "m.json"):
        raise PermissionError(13, "Permission denied")
    assert str(info.value) == (f"{tmp_path / 'm.json'}: cannot write (Permission denied); check the folder's "
                               "permissions (the previous file is unchanged)")
    assert (tmp_path / "m.json").read_text() == "old" and os.listdir(tmp_path) == ["m.json"]


# --- item 2: a failed rerun keeps a finished run's results ---------------------------------------

@pytest.fixture()
def finished(tiny_run, tmp_path) -> Path:
    """A copy of the finished tiny run (results and snakemake's metadata, mtimes kept)."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    assert "Nothing to be done" in run_snakemake(workdir, REPO / "config/test.yaml", "-n").stdout
    return workdir


def _bad_dataset_config(tmp_path: Path) -> Path:
    data = tmp_path / "bad_data"
    (data / "images/train").mkdir(parents=True)  # no images, no val split
    (data / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    cfg = yaml.safe_load((REPO / "config/test.yaml").read_text())
    cfg["dataset"] = {"path": str(data / "data.yaml")}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "bad.yaml"


@pytest.mark.e2e
def test_a_bad_dataset_leaves_a_finished_run_untouched(finished, tmp_path):
    before = snapshot(finished / "results")
    proc = subprocess.run(snakemake_cmd(finished, _bad_dataset_config(tmp_path)), capture_output=True, text=True, timeout=600)
    line = one_error_line(proc)
    assert "bad_data/data.yaml: train: no images" in line, line
    assert snapshot(finished / "results") == before  # dataset.json included
    # Back on the good config: nothing to redo (before, the whole chain of 19 jobs reran).
    assert "Nothing to be done" in run_snakemake(finished, REPO / "config/test.yaml", "-n").stdout


@pytest.mark.e2e
@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_checkpoint_stops_the_run_before_any_job(finished, damage):
    baseline = finished / "results/baseline.pt"
    if damage == "truncated":
        baseline.write_bytes(baseline.read_bytes()[: baseline.stat().st_size // 2])
    else:
        corrupt_tensor_bytes(baseline)
    before = snapshot(finished / "results")
    proc = subprocess.run(snakemake_cmd(finished, REPO / "config/test.yaml"), capture_output=True, text=True, timeout=600)
    line = one_error_line(proc)
    assert "results/baseline.pt" in line and ("corrupted" in line or "not a loadable checkpoint" in line)
    assert snapshot(finished / "results") == before  # metrics/baseline.json and its predictions kept


# --- issue 30, item 4: whole or nothing --------------------------------------------------------

@pytest.mark.e2e
def test_a_killed_export_is_rebuilt_by_the_next_run_and_its_temporary_file_removed(finished, tmp_path):
    onnx, config = finished / "results/export/pruned_finetuned.onnx", REPO / "config/test.yaml"
    mark = tmp_path / "frozen"
    env = {**os.environ, "SLIMFLOW_FAILPOINT": "write pruned_finetuned.onnx@1", "SLIMFLOW_FAILPOINT_MARK": str(mark)}
    proc = subprocess.Popen(snakemake_cmd(finished, config, "--force", str(onnx.relative_to(finished))), env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not mark.exists() and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the export frozen before its rename
    proc.wait()
    assert mark.exists() and not onnx.exists() and list(onnx.parent.glob(".pruned_finetuned.onnx.*.tmp"))
    run_snakemake(finished, config, "--unlock")
    assert "rule export_onnx:" in run_snakemake(finished, config, "-n").stdout  # rule all asks for it
    # The export alone: the jobs after it in the default target (ONNX evaluation, INT8, report) read
    # a rebuilt file as any other, tested on the tiny run.
    run_snakemake(finished, config, str(onnx.relative_to(finished)))
    assert onnx.is_file() and onnx.with_suffix(".json").is_file()
    assert not list(onnx.parent.glob(".*.tmp"))


@pytest.mark.e2e
def test_a_garbage_onnx_or_a_misspelt_float_layer_stops_before_any_job(finished, tmp_path):
    onnx, good = finished / "results/export/pruned_finetuned.onnx", tmp_path / "good.onnx"
    shutil.copy(onnx, good)
    onnx.write_bytes(b"garbage, not a protobuf\n")
    before = snapshot(finished / "results")
    line = one_error_line(subprocess.run(snakemake_cmd(finished, REPO / "config/test.yaml"), capture_output=True,
                                         text=True, timeout=600))
    assert "results/export/pruned_finetuned.onnx: not " in line and snapshot(finished / "results") == before
    shutil.copy(good, onnx)
    typo = tmp_path / "typo.yaml"
    cfg = yaml.safe_load((REPO / "config/test.yaml").read_text())
    typo.write_text(yaml.safe_dump({**cfg, "export": {**cfg.get("export", {}), "int8_float_layers": ["stage2.0.cnv"]}}))
    before = snapshot(finished / "results")
    line = one_error_line(subprocess.run(snakemake_cmd(finished, typo), capture_output=True, text=True, timeout=600))
    assert "export.int8_float_layers: 'stage2.0.cnv' is not a layer of results/export/pruned_finetuned.onnx" in line
    assert snapshot(finished / "results") == before
