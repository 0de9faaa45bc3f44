"""Pose data: COCO keypoints validation (one line naming file and annotation), the synthetic
generator's determinism, flip pairs from names, and the crops the loader makes."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline_lib.errors import UserError
from pipeline_lib.tasks.pose.task import TASK
from pipeline_lib.tasks.pose.checks import check_dataset
from pipeline_lib.tasks.pose.coco import flip_pairs, index_coco_keypoints, locate
from pipeline_lib.tasks.pose.synthetic import KEYPOINTS, generate_coco_keypoints

SYN = {"path": None, "synthetic": {"n_train": 6, "n_val": 4, "imgsz": 64, "difficulty": 0.3}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny generated dataset: its root and the manifest prepare_dataset wrote for it."""
    out = tmp_path_factory.mktemp("pose")
    return out / "pose", TASK.prepare_dataset(SYN, out, seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generator_is_byte_identical_for_a_seed_and_differs_across_seeds(tmp_path):
    a = generate_coco_keypoints(tmp_path / "a", n_train=5, n_val=3, imgsz=64, seed=3, difficulty=0.5)
    b = generate_coco_keypoints(tmp_path / "b", n_train=5, n_val=3, imgsz=64, seed=3, difficulty=0.5)
    c = generate_coco_keypoints(tmp_path / "c", n_train=5, n_val=3, imgsz=64, seed=4, difficulty=0.5)
    assert _files(a) == _files(b)
    assert _files(a).keys() == _files(c).keys() and _files(a) != _files(c)


def test_generated_dataset_is_coco_keypoints_that_validates(dataset):
    root, manifest = dataset
    gt = json.loads((root / "annotations" / "person_keypoints_train.json").read_text())
    assert gt["categories"][0]["keypoints"] == KEYPOINTS and len(gt["images"]) == 6
    for ann in gt["annotations"]:
        v = np.asarray(ann["keypoints"]).reshape(-1, 3)
        assert ann["num_keypoints"] == int((v[:, 2] > 0).sum())
        assert np.all(v[v[:, 2] == 0, :2] == 0)  # unlabelled = (0, 0, 0), as COCO writes it
    assert manifest["task"] == "pose" and manifest["names"] == KEYPOINTS
    assert manifest["flip_pairs"] == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]
    assert set(manifest["splits"]) == {"train", "val"} and manifest["counts"]["train"]["people"] > 0
    assert set(manifest["checksums"]) == {"train", "val"}
    json.dumps(manifest)  # the pipeline writes it as JSON


def test_flip_pairs_come_from_left_right_names():
    assert flip_pairs(["head", "left_hand", "right_hand", "Left_Foot", "right_foot"], "x") == [[1, 2], [3, 4]]
    with pytest.raises(UserError, match=r"^x: keypoint 'left_paw' has no 'right_paw'"):
        flip_pairs(["left_paw", "tail"], "x")


def _corrupt(root: Path, tmp_path: Path, edit) -> Path:
    """A copy of the dataset whose train JSON was changed by edit(data)."""
    copy_root = tmp_path / "bad"
    for rel, blob in _files(root).items():
        (copy_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy_root / rel).write_bytes(blob)
    path = copy_root / "annotations" / "person_keypoints_train.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return copy_root


def _set(key, value, ann=0):
    def edit(data):
        data["annotations"][ann][key] = value
    return edit


def _keypoint(j, values):
    def edit(data):
        data["annotations"][0]["keypoints"][3 * j: 3 * j + 3] = values
    return edit


BAD = {
    "too few values": (_set("keypoints", [1.0] * 50), r"keypoints has 50 values; expected 17 keypoints x 3 = 51"),
    "visibility 3": (_keypoint(4, [10, 10, 3]), r"keypoint 4 has visibility 3; expected 0 \(unlabelled\), 1"),
    "outside the image": (_keypoint(5, [70.0, 10.0, 2]), r"keypoint 5 at \(70.0, 10.0\) lies outside the 64x64 image"),
    "zero-width box": (_set("bbox", [3, 4, 0, 10]), r"bbox \[3, 4, 0, 10\] has no area"),
    "box off the image": (_set("bbox", [50, 4, 30, 10]), r"bbox \[50, 4, 30, 10\] leaves the 64x64 image"),
    "not a box": (_set("bbox", [1, 2, 3]), r"bbox \[1, 2, 3\] is not \[x, y, w, h\]"),
    "unknown image": (_set("image_id", 999), r"image_id 999 is not in images"),
    "num_keypoints": (_set("num_keypoints", 99), r"num_keypoints is 99 but \d+ keypoints are labelled"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_annotation_is_one_line_naming_file_and_annotation(dataset, tmp_path, case):
    edit, message = BAD[case]
    root = _corrupt(dataset[0], tmp_path, edit)
    with pytest.raises(UserError) as info:
        index_coco_keypoints(root, tmp_path / "gt")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{root / 'annotations' / 'person_keypoints_train.json'}: annotation 1 (image ")
    assert __import__("re").search(message, text), text
    with pytest.raises(UserError) as before_any_job:  # the preflight's check says the same
        check_dataset({"path": str(root)}, {"sigmas": [0.1] * 17})
    assert str(before_any_job.value) == text


def test_missing_and_broken_images_and_files_are_named(dataset, tmp_path):
    root = _corrupt(dataset[0], tmp_path, lambda data: None)
    (root / "images" / "train" / "000002.jpg").unlink()
    with pytest.raises(UserError, match=r"person_keypoints_train\.json: image 2: file .*000002\.jpg is missing"):
        index_coco_keypoints(root, tmp_path / "gt")
    (root / "images" / "train" / "000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=r"image 2: .*000002\.jpg is not a readable image"):
        index_coco_keypoints(root, tmp_path / "gt")
    with pytest.raises(UserError, match=r"image 2: .*000002\.jpg is not a readable image"):
        check_dataset({"path": str(root)}, {"sigmas": [0.1] * 17})  # the header alone, before any job
    (root / "annotations" / "person_keypoints_train.json").write_text('{"images": [\n oops')
    with pytest.raises(UserError, match=r"person_keypoints_train\.json:2: not valid JSON"):
        index_coco_keypoints(root, tmp_path / "gt")
    (root / "annotations" / "person_keypoints_val.json").unlink()
    with pytest.raises(UserError, match=r"person_keypoints_val\.json: missing"):
        locate(root)


def test_prepare_dataset_reads_a_real_folder_like_the_generated_one(dataset, tmp_path):
    root, generated = dataset
    manifest = TASK.prepare_dataset({"path": str(root)}, tmp_path, seed=0)
    assert manifest["splits"] == generated["splits"] and manifest["checksums"] == generated["checksums"]


def test_loader_crops_and_joints_line_up_and_do_not_depend_on_workers(dataset):
    _, manifest = dataset
    args = dict(imgsz=[64, 32], batch_size=4, seed=0, augment={"rotation": 30, "half_body": 0.5})
    a = next(iter(TASK.loader(manifest, "train", train=True, workers=0, **args)))
    b = next(iter(TASK.loader(manifest, "train", train=True, workers=2, **args)))
    assert a["images"].shape == (4, 3, 64, 32) and a["images"].dtype == torch.float32
    assert 0 <= float(a["images"].min()) and float(a["images"].max()) <= 1
    assert a["joints"].shape == (4, 17, 2) and a["visible"].shape == (4, 17)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    val = next(iter(TASK.loader(manifest, "val", train=False, workers=0, imgsz=[64, 32], batch_size=4, seed=0)))
    assert val["inverse"].shape == (4, 2, 3) and "joints" not in val


def test_unflipped_crop_keeps_keypoints_where_the_person_is(dataset):
    """Without augmentation, a keypoint mapped into the crop and back lands where it started."""
    _, manifest = dataset
    item = manifest["splits"]["val"][0]
    ds = TASK.loader(manifest, "val", train=False, workers=0, imgsz=[64, 48], batch_size=1, seed=0).dataset
    inverse = ds[0]["inverse"].numpy()
    kps = np.asarray(item["keypoints"]).reshape(-1, 3)
    train_ds = copy.copy(ds)
    train_ds.augment = {"flip": 0.0, "rotation": 0.0, "rotation_prob": 0.0, "scale": 0.0, "half_body": 0.0,
                        "half_body_min_keypoints": 8}
    joints = train_ds[0]["joints"].numpy()  # heatmap coordinates
    back = joints @ inverse[:, :2].T + inverse[:, 2]
    labelled = kps[:, 2] > 0
    assert np.allclose(back[labelled], kps[labelled, :2], atol=1e-3)


def test_pre_run_check_reads_without_torch_or_writing_and_counts_the_sigmas(dataset, tmp_path):
    root = dataset[0]
    before = _files(root)
    read = check_dataset({"path": str(root)}, {"sigmas": [0.1] * 17})
    assert root / "annotations" / "person_keypoints_val.json" in read and root / "images/train/000001.jpg" in read
    assert _files(root) == before
    with pytest.raises(UserError, match=r"^evaluate\.sigmas: 16 values for the 17 keypoints of .*person_keypoints_train\.json"):
        check_dataset({"path": str(root)}, {"sigmas": [0.1] * 16})
    with pytest.raises(UserError, match=r"^evaluate\.sigmas: 5 values for the 17 keypoints of the embedded generator"):
        check_dataset({"path": None}, {"sigmas": [0.1] * 5})
    probe = "import sys; from pipeline_lib.tasks.pose import checks; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0
