"""YOLO-format data: the generator, validation errors (file:line), the dataset and collate."""
import re

import pytest
import torch
import yaml
from PIL import Image

from pipeline_lib.errors import UserError
from pipeline_lib.tasks.detection.data import DEFAULT_AUGMENT, YoloDataset, collate, scale_boxes_to_original
from pipeline_lib.tasks.detection.yolo_format import coco_ground_truth, index_yolo_dataset
from pipeline_lib.tasks.detection.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("syn"), n_train=12, n_val=4, imgsz=64, seed=3)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "data.yaml"}


def test_generator_is_deterministic_per_seed(synthetic, tmp_path):
    again = generate_synthetic(tmp_path / "a", n_train=12, n_val=4, imgsz=64, seed=3)
    other = generate_synthetic(tmp_path / "b", n_train=12, n_val=4, imgsz=64, seed=4)
    assert _files(synthetic.parent) == _files(again.parent)
    assert _files(synthetic.parent) != _files(other.parent)


def test_generated_dataset_passes_validation(synthetic):
    index = index_yolo_dataset(synthetic)
    assert [len(index["splits"][s]) for s in ("train", "val")] == [12, 4]
    boxes = [b for item in index["splits"]["train"] for b in item["boxes"]]
    assert len(boxes) >= 12 and len({int(b[0]) for b in boxes}) > 1


def _dataset(root, labels=("0 0.5 0.5 0.2 0.2\n",), size=(40, 30)):
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for k, text in enumerate(labels):
            Image.new("RGB", size, (k * 40, 90, 20)).save(root / "images" / split / f"{k}.png")
            (root / "labels" / split / f"{k}.txt").write_text(text)
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": ["a", "b"]}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


@pytest.mark.parametrize("label, expected", [
    ("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n", "1.txt:2: class id 2 out of range [0, 2)"),
    ("0 0.5 0.5 0.2\n", "1.txt:1: expected 5 columns"),
    ("1 0.5 1.5 0.2 0.2\n", "1.txt:1: coordinates must be normalized"),
    ("1 0.5 0.5 0.0 0.2\n", "1.txt:1: zero-area box"),
    ("one 0.5 0.5 0.2 0.2\n", "1.txt:1: not numbers"),
])
def test_bad_label_lines_name_file_and_line(tmp_path, label, expected):
    data_yaml = _dataset(tmp_path, labels=("0 0.5 0.5 0.2 0.2\n", label))
    with pytest.raises(UserError, match=re.escape(expected)) as info:
        index_yolo_dataset(data_yaml)
    assert str(tmp_path / "labels" / "train") in str(info.value)


def test_corrupt_image_missing_split_and_bad_yaml(tmp_path):
    data_yaml = _dataset(tmp_path)
    (tmp_path / "images" / "train" / "x.png").write_bytes(b"garbage")
    (tmp_path / "images" / "train" / "notes.txt").write_text("ignored: not an image suffix")
    with pytest.raises(UserError, match=r"x\.png: unreadable image"):
        index_yolo_dataset(data_yaml)
    (tmp_path / "images" / "train" / "x.png").unlink()
    data = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**data, "val": "images/nope"}))
    with pytest.raises(UserError, match=r"data\.yaml: val: folder .*nope does not exist"):
        index_yolo_dataset(data_yaml)
    data_yaml.write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "names"}))
    with pytest.raises(UserError, match="missing key 'names'"):
        index_yolo_dataset(data_yaml)


def test_empty_label_is_a_background_image(tmp_path):
    index = index_yolo_dataset(_dataset(tmp_path, labels=("0 0.5 0.5 0.2 0.2\n", "")))
    assert [item["boxes"] for item in index["splits"]["train"]][1] == []


def test_augmented_samples_depend_only_on_seed_epoch_and_index(synthetic):
    items = index_yolo_dataset(synthetic)["splits"]["train"]
    a, b = YoloDataset(items, 64, DEFAULT_AUGMENT, seed=1), YoloDataset(items, 64, DEFAULT_AUGMENT, seed=1)
    first = a[5]
    _ = [b[i] for i in (3, 1, 4)]  # other calls in between must not matter
    again = b[5]
    assert first["image"].shape == (3, 64, 64) and first["image"].dtype == torch.float32
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["boxes"], again["boxes"])
    assert ((first["boxes"] >= 0) & (first["boxes"] <= 1)).all()
    b.set_epoch(1)
    assert not torch.equal(first["image"], b[5]["image"])


def test_letterbox_round_trip_matches_coco_ground_truth(tmp_path):
    index = index_yolo_dataset(_dataset(tmp_path, labels=("1 0.25 0.6 0.3 0.4\n",), size=(80, 40)))
    items = index["splits"]["val"]
    sample = YoloDataset(items, 64)[0]
    assert sample["ratio_pad"] == (0.8, 0.0, 16.0)  # 80x40 -> 64x32, padded 16 px top and bottom
    xyxy = torch.cat((sample["boxes"][:, :2] - sample["boxes"][:, 2:] / 2, sample["boxes"][:, :2] + sample["boxes"][:, 2:] / 2), 1) * 64
    back = scale_boxes_to_original(xyxy, torch.tensor(sample["ratio_pad"]), sample["orig_size"])
    x, y, w, h = coco_ground_truth(items, index["names"])["annotations"][0]["bbox"]
    assert torch.allclose(back[0], torch.tensor([x, y, x + w, y + h]), atol=1.0)


def test_collate_builds_yolov5_targets(synthetic):
    items = index_yolo_dataset(synthetic)["splits"]["val"]
    ds = YoloDataset(items, 64)
    batch = collate([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, 64, 64)
    counts = [len(items[0]["boxes"]), len(items[1]["boxes"])]
    assert batch["targets"].shape == (sum(counts), 6)
    assert batch["targets"][:, 0].tolist() == [0.0] * counts[0] + [1.0] * counts[1]
    assert batch["image_ids"].tolist() == [1, 2]


def test_exif_rotated_camera_image_is_read_upright(tmp_path):
    data_yaml = _dataset(tmp_path, labels=("0 0.5 0.5 0.2 0.2\n",), size=(40, 30))
    image = tmp_path / "images" / "train" / "0.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° to display
    Image.new("RGB", (40, 30)).save(image.with_suffix(".jpg"), exif=exif.tobytes())
    image.unlink()
    item = index_yolo_dataset(data_yaml)["splits"]["train"][0]
    assert (item["width"], item["height"]) == (30, 40)
    assert YoloDataset([item], 64)[0]["ratio_pad"] == (1.6, 8.0, 0.0)  # upright 30x40 -> 48x64, padded left/right
