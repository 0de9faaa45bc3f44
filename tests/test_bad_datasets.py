"""Bad datasets through the real entry points (see test_bad_inputs.py): snakemake, run the way a
user runs it, and the CLI's prepare-dataset. Each ends with a non-zero exit and ONE line naming the
file (and line, entry or key), no traceback, and nothing in results/ changes. Detection's YOLO
folders, a Market-1501 name, and pose's COCO keypoints files and sigmas; the forms that are valid."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bad_inputs import (CASE, DRY, LABEL, PREPARE, RUN, case, cli, fails_in_one_line_and_keeps_results, family_layout,
                        fresh_copy, snakemake, write)
from conftest import REPO, one_error_line
from pose_landmarks import SIGMAS, write_landmark_dataset

pytestmark = pytest.mark.e2e  # runs the real snakemake or the CLI


def _no_images_folder(root: Path):
    (root / "data/images").rename(root / "data/pics")
    (root / "data/data.yaml").write_text("path: .\ntrain: pics/train\nval: pics/val\nnames: [a, b]\n")


def _yaml(names: str, extra: str = "") -> str:
    return f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n{extra}"


DATA = [DRY, PREPARE]
CASES = [
    # --- dataset (before any job through snakemake; item 8: ultralytics forms)
    ("malformed data.yaml", write("data/data.yaml", "train: [images/train\nval: x\n"), DATA, ["data.yaml:", "not valid YAML"]),
    ("data.yaml without names", write("data/data.yaml", "train: images/train\nval: images/val\n"), DATA, ["data.yaml", "names"]),
    ("duplicated data.yaml key", write("data/data.yaml", _yaml("[a, b]", "val: images/train\n")), DATA,
     ["data.yaml:5:", "'val' given twice"]),
    ("missing split directory", lambda r: shutil.rmtree(r / "data/images/val"), DATA, ["data.yaml", "val", "does not exist"]),
    ("images without an images/ folder", _no_images_folder, DATA, ["data.yaml", "0.png", "no 'images' folder"]),
    ("names with mixed key types", write("data/data.yaml", _yaml("{0: a, '1': b}")), DATA, ["data.yaml", "names:", "numbers"]),
    ("nc disagrees with names", write("data/data.yaml", _yaml("[a, b]", "nc: 3\n")), DATA, ["data.yaml", "nc:", "2 classes"]),
    ("null class name", write("data/data.yaml", _yaml("[a, null]")), DATA, ["data.yaml", "names:", "class 1 has no name"]),
    ("duplicated class names", write("data/data.yaml", _yaml("[a, a]")), DATA, ["data.yaml", "names:", "'a' is both class 0 and class 1"]),
    ("list file naming a missing image", lambda r: ((r / "data/train.txt").write_text("./images/train/0.png\n./images/train/9.png\n"),
                                                     (r / "data/data.yaml").write_text(_yaml("[a, b]").replace("images/train", "train.txt", 1))),
     DATA, ["train.txt:2:", "no such image"]),
    ("class id >= nc", write("data/labels/train/1.txt", LABEL + "2 0.5 0.5 0.1 0.1\n"), DATA, ["1.txt:2:", "class id 2"]),
    ("wrong column count", write("data/labels/val/0.txt", "0 0.5 0.5 0.2\n"), DATA, ["0.txt:1:", "5 columns"]),
    ("coordinates outside [0,1]", write("data/labels/train/0.txt", "1 1.2 0.5 0.2 0.2\n"), DATA, ["0.txt:1:", "normalized"]),
    ("zero-area box", write("data/labels/train/0.txt", "1 0.5 0.5 0.2 0\n"), DATA, ["0.txt:1:", "zero-area"]),
    ("non-image file", write("data/images/train/0.png", "just text"), DATA, ["0.png", "unreadable image"]),
    ("corrupt image", lambda r: (r / "data/images/val/1.png").write_bytes((r / "data/images/val/1.png").read_bytes()[:60]),
     DATA, ["data/images/val/1.png", "unreadable image"]),
    # --- issue 30, items 3 and 6: image headers before any job; a 16-bit image is refused, not saturated
    ("0-byte image", write("data/images/train/1.png", b""), DATA, ["data/images/train/1.png", "unreadable image"]),
    ("16-bit image", lambda r: Image.fromarray(np.full((40, 48), 40000, np.uint16)).save(r / "data/images/val/0.png"),
     DATA, ["data/images/val/0.png", "I;16 image", "8-bit"]),
]


@pytest.mark.parametrize("setup, runners, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_dataset_fails_in_one_line_and_keeps_results(valid, tmp_path, setup, runners, fragments):
    fails_in_one_line_and_keeps_results(valid, tmp_path, setup, runners, fragments)


def test_empty_label_file_is_a_valid_background_image(valid, tmp_path):
    root = fresh_copy(valid, tmp_path)
    (root / "data/labels/train/1.txt").write_text("")
    proc = cli(root, "prepare-dataset")
    assert proc.returncode == 0, proc.stderr
    manifest = yaml.safe_load((root / "results/data/dataset.json").read_text())
    assert manifest["counts"]["train"] == {"images": 2, "boxes": 1}


@pytest.mark.parametrize("data_yaml, train_images", [
    (_yaml("{0: a, 1: b}"), 2),                                         # names as {id: name}
    (_yaml("{'0': a, '1': b}", "nc: 2\n"), 2),                          # string ids, as ultralytics reads them
    (_yaml("[a, b]").replace("images/train", "train.txt", 1), 2),       # a list file (./ relative to it)
    (_yaml("[a, b]").replace("images/train", "[images/train, images/val]", 1), 4),  # a list of folders
])
def test_ultralytics_data_yaml_forms_are_accepted(valid, tmp_path, data_yaml, train_images):
    root = fresh_copy(valid, tmp_path)
    (root / "data/train.txt").write_text("./images/train/0.png\nimages/train/1.png\n")
    (root / "data/data.yaml").write_text(data_yaml)
    for proc in (cli(root, "prepare-dataset"), DRY(root)):
        assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = yaml.safe_load((root / "results/data/dataset.json").read_text())
    assert manifest["names"] == ["a", "b"] and manifest["counts"]["train"]["images"] == train_images


def test_preflight_cache_remembers_what_passed_and_sees_an_edit(valid, tmp_path):
    root = fresh_copy(valid, tmp_path)
    assert DRY(root).returncode == 0
    cache = yaml.safe_load((root / ".snakemake/slimflow/preflight.json").read_text())
    label = root / "data/labels/train/0.txt"
    assert "data/labels/train/0.txt" in cache["dataset:"]["files"] and "results/baseline.pt" in cache["checkpoints"]
    label.write_text("0 0.5 0.5 0.2\n")  # edited after a passed check
    assert "0.txt:1:" in one_error_line(DRY(root))


def test_an_unchanged_run_is_checked_and_scheduled_without_torch(valid, tmp_path):
    """Once the preflight has passed a checkpoint, parsing the workflow (config validation, the
    dataset's check, the evaluator lookup) needs no torch: a second dry run works with an
    importable `torch` that refuses to load. The first one checked the checkpoint with the real one."""
    root = fresh_copy(valid, tmp_path)
    assert DRY(root).returncode == 0
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch imported while snakemake parsed the workflow')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))}
    proc = snakemake(root, "results/metrics/baseline.json", "-n", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
    (root / "data/labels/train/0.txt").write_text("0 0.5 0.5 0.2\n")  # the dataset check itself runs without torch
    assert "0.txt:1:" in one_error_line(snakemake(root, "results/metrics/baseline.json", "-n", env=env))
    (root / CASE).write_text("model:\n  anchors:\n    - [10, 13, 16]\n    - [30, 61]\n    - [62, 45]\n")
    assert "model.anchors.0:" in one_error_line(snakemake(root, "results/metrics/baseline.json", "-n", env=env))


def test_market1501_name_that_does_not_parse_fails_naming_the_file(tmp_path):
    from pipeline_lib.tasks.reid.synthetic import generate_market

    market = generate_market(tmp_path / "market", n_train_ids=4, n_test_ids=3, height=64, seed=0)
    first = sorted((market / "bounding_box_train").glob("*.jpg"))[0]
    bad = first.with_name("person_7.jpg")
    first.rename(bad)
    cfg = yaml.safe_load((REPO / "config/test_reid.yaml").read_text())
    root = family_layout(tmp_path / "repo", {**cfg, "dataset": {"path": str(market)}})
    for run in (PREPARE, DRY):
        line = one_error_line(run(root))
        assert str(bad) in line
        assert not (root / "results").exists() or list((root / "results").rglob("*.json")) == []


@pytest.fixture(scope="session")  # its cases are spread over the workers (conftest.SPREAD)
def pose_valid(tmp_path_factory) -> Path:
    """A pose user's layout: five custom-named landmarks (not COCO's 17) with their sigmas,
    a prepared manifest and a previous result that must survive."""
    root = tmp_path_factory.mktemp("pose_valid") / "repo"
    cfg = yaml.safe_load((REPO / "config/test_pose.yaml").read_text())
    family_layout(root, {**cfg, "dataset": {"path": "data/landmarks"}, "evaluate": {**cfg["evaluate"], "sigmas": SIGMAS}})
    write_landmark_dataset(root / "data/landmarks")
    assert PREPARE(root).returncode == 0
    (root / "results/metrics").mkdir()
    (root / "results/metrics/baseline.json").write_text("{}")
    return root


def _visibility_3(root: Path):
    path = root / "data/landmarks/annotations/person_keypoints_train.json"
    coco = json.loads(path.read_text())
    coco["annotations"][1]["keypoints"][3 * 2 + 2] = 3  # annotation id 2, keypoint 2 (right_hand)
    path.write_text(json.dumps(coco))


TRAIN_JSON = "data/landmarks/annotations/person_keypoints_train.json"
POSE_CASES = [
    ("pose visibility 3", _visibility_3, DATA, [TRAIN_JSON, "annotation 2 (image ", "keypoint 2 has visibility 3"]),
    ("pose sigmas for COCO's 17 keypoints", case("evaluate:\n  sigmas: [" + ", ".join(["0.05"] * 17) + "]\n"),
     [DRY, RUN], ["evaluate.sigmas: 17 values for the 5 keypoints of ", TRAIN_JSON]),
]


@pytest.mark.parametrize("setup, runners, fragments", [c[1:] for c in POSE_CASES], ids=[c[0] for c in POSE_CASES])
def test_bad_pose_dataset_fails_in_one_line_and_keeps_results(pose_valid, tmp_path, setup, runners, fragments):
    fails_in_one_line_and_keeps_results(pose_valid, tmp_path, setup, runners, fragments)


# --- issue 30, item 3: every family checks its data before any job (pose: above) ------------------------------

@pytest.fixture(scope="session")  # its cases are spread over the workers (conftest.SPREAD)
def reid_valid(tmp_path_factory) -> Path:
    """A ReID user's layout: a small Market-1501 folder, its manifest and a previous result."""
    from pipeline_lib.tasks.reid.synthetic import generate_market

    root = tmp_path_factory.mktemp("reid_valid") / "repo"
    cfg = yaml.safe_load((REPO / "config/test_reid.yaml").read_text())
    family_layout(root, {**cfg, "dataset": {**cfg.get("dataset", {}), "path": "data/market"}})
    generate_market(root / "data/market", n_train_ids=4, n_test_ids=3, height=64, seed=0)
    return _prepared(root)


@pytest.fixture(scope="session")
def diffusion_valid(tmp_path_factory) -> Path:
    """A diffusion user's layout: MNIST's four IDX files (random digits), its manifest and a previous result."""
    from pipeline_lib.tasks.diffusion.idx import FILES, write_idx

    root = tmp_path_factory.mktemp("diffusion_valid") / "repo"
    cfg = yaml.safe_load((REPO / "config/test_diffusion.yaml").read_text())
    family_layout(root, {**cfg, "dataset": {**cfg.get("dataset", {}), "path": "data/mnist"}})
    rng = np.random.default_rng(0)
    for (images, labels), n in zip(FILES.values(), (30, 20)):
        write_idx(root / "data/mnist" / images, rng.integers(0, 256, (n, 16, 16), dtype=np.uint8))
        write_idx(root / "data/mnist" / labels, (np.arange(n) % 10).astype(np.uint8))
    return _prepared(root)


def _prepared(root: Path) -> Path:
    proc = PREPARE(root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (root / "results/metrics").mkdir()
    (root / "results/metrics/baseline.json").write_text("{}")
    return root


def _truncate(path: str):
    return lambda root: (root / path).write_bytes((root / path).read_bytes()[:-100])


def _first_market_image(root: Path):  # a training identity's (junk, "-1_...", is never read)
    sorted((root / "data/market/bounding_box_train").glob("[0-9]*.jpg"))[0].write_bytes(b"")


@pytest.mark.parametrize("family, setup, fragments", [
    ("reid", _first_market_image, ["data/market/bounding_box_train/", "unreadable image"]),
    ("diffusion", _truncate("data/mnist/t10k-images-idx3-ubyte"), ["data/mnist/t10k-images-idx3-ubyte", "truncated"]),
], ids=["reid 0-byte image", "diffusion truncated IDX"])
def test_every_family_checks_its_data_before_any_job(request, tmp_path, family, setup, fragments):
    fails_in_one_line_and_keeps_results(request.getfixturevalue(f"{family}_valid"), tmp_path, setup, DATA, fragments)
