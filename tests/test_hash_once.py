"""prepare_dataset takes each file's sha256 from the pre-run check that hashed it moments before
(fingerprint.dataset_file_sha256), so a large dataset is read for hashing once on its first run;
a file changed since (another size or mtime) is hashed anew."""
import json
import os

from pipeline_lib.config import load_config
from pipeline_lib.fingerprint import PREFLIGHT_CACHE
from pipeline_lib.preflight import preflight
from pipeline_lib.tasks.detection.yolo_format import index_yolo_dataset

from bad_inputs import _yolo_dataset
from conftest import REPO

FORGED = "f" * 64


def _forge_the_checked_hash(name: str) -> None:
    """Replace the pre-run check's sha256 of `name` by FORGED: what prepare uses shows where it came from."""
    cache = json.loads(open(PREFLIGHT_CACHE).read())
    entry = next(v for k, v in cache.items() if k.startswith("dataset:"))
    (key,) = [k for k in entry["hashes"] if k.endswith(name)]
    entry["hashes"][key][2] = FORGED
    open(PREFLIGHT_CACHE, "w").write(json.dumps(cache))


def test_prepare_reuses_the_pre_run_checks_hashes_of_unchanged_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _yolo_dataset(tmp_path)
    preflight(load_config(REPO / "config/test.yaml", {"dataset": {"path": "data/data.yaml"}}), "results")
    hashed_here = index_yolo_dataset("data/data.yaml")["checksums"]
    _forge_the_checked_hash("images/train/0.png")
    reused = index_yolo_dataset("data/data.yaml")["checksums"]
    assert reused["train"] != hashed_here["train"] and reused["val"] == hashed_here["val"]

    os.utime("data/images/train/0.png", ns=(1, 1))  # changed since the check: hashed anew
    assert index_yolo_dataset("data/data.yaml")["checksums"] == hashed_here
