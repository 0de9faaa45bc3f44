"""The run sees the data it says it used (issue 30, item 1): an edited dataset file makes
prepare_dataset and everything after it out of date in Snakemake's own terms (the dataset's
content fingerprint is the job's param), and a project copied or moved reads its own files (the
manifest and the pre-run cache hold no absolute path of the project)."""
import json
import shutil

import pytest

from bad_inputs import DRY, EVAL, fresh_copy, snakemake
from conftest import one_error_line

pytestmark = pytest.mark.e2e  # runs the real snakemake and the CLI

MANIFEST = "results/data/dataset.json"


def test_an_edited_label_reruns_prepare_dataset_and_the_manifest_has_the_new_box(valid, tmp_path):
    root = fresh_copy(valid, tmp_path)
    (root / MANIFEST).unlink()
    assert snakemake(root, MANIFEST).returncode == 0  # made by snakemake: its params are recorded
    assert "Nothing to be done" in snakemake(root, MANIFEST, "-n").stdout
    (root / "data/labels/train/0.txt").write_text("1 0.5 0.5 0.3 0.3\n")
    dry = snakemake(root, "results/metrics/baseline.json", "-n")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "rule prepare_dataset:" in dry.stdout and "rule evaluate:" in dry.stdout, dry.stdout[-3000:]
    assert snakemake(root, MANIFEST).returncode == 0
    items = json.loads((root / MANIFEST).read_text())["splits"]["train"]
    assert [it["boxes"] for it in items if it["image"].endswith("0.png")] == [[[1, 0.5, 0.5, 0.3, 0.3]]]
    assert "Nothing to be done" in snakemake(root, MANIFEST, "-n").stdout


def test_a_moved_project_runs_and_a_copy_checks_its_own_files(valid, tmp_path):
    original = fresh_copy(valid, tmp_path / "a")
    assert DRY(original).returncode == 0  # the pre-run cache now remembers the original's files
    manifest = json.loads((original / MANIFEST).read_text())
    assert not any(it["image"].startswith("/") for it in manifest["splits"]["val"])
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    (copy / "data/labels/val/1.txt").write_text("0 0.5 0.5 0.2\n")  # broken in the copy only
    assert f"{'data/labels/val/1.txt'}:1:" in one_error_line(DRY(copy))
    moved = tmp_path / "moved"
    shutil.move(original, moved)
    proc = EVAL(moved)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dry = DRY(moved)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout, dry.stdout[-2000:] + dry.stderr[-2000:]
