"""A read-only results/ (or a folder in it) stops the run in one line before any job: onstart's
probe (`preflight.check_writable`). chmod does not stop root, so the folder is made read-only the
way a read-only mount is: bound onto itself and remounted ro (root only; skipped elsewhere)."""
import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline_lib.errors import UserError
from pipeline_lib.preflight import check_writable

from conftest import REPO, one_error_line, run_snakemake, snapshot


@contextlib.contextmanager
def read_only(path: Path):
    """`path` read-only for every process, root included, while the block runs."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root")
    bound = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if bound.returncode:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _results(root: Path) -> Path:
    (root / "results/work/baseline").mkdir(parents=True)
    (root / "results/notes.txt").write_text("kept")  # not a .pt: the pre-run check would read that first
    return root / "results"


@pytest.mark.parametrize("folder", [".", "work"])
def test_the_probe_names_the_read_only_folder(tmp_path, folder):
    results = _results(tmp_path)
    with read_only(results / folder):
        with pytest.raises(UserError) as info:
            check_writable(results)
    named = results if folder == "." else results / folder
    assert str(info.value).startswith(f"{named}: cannot write (Read-only file system)"), str(info.value)
    check_writable(results)  # writable again: passes, and leaves no probe file behind
    assert sorted(p.name for p in results.rglob("*")) == ["baseline", "notes.txt", "work"]


@pytest.mark.e2e
def test_a_read_only_results_folder_stops_snakemake_before_any_job(tmp_path):
    results = _results(tmp_path)
    before = snapshot(results)
    with read_only(results):
        line = one_error_line(run_snakemake(tmp_path, REPO / "config/test.yaml", check=False))
    assert line.startswith("slimflow error: results: cannot write (Read-only file system)"), line
    assert snapshot(results) == before and not (tmp_path / "results/logs").exists()
