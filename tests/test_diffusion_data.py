"""The diffusion family's data: MNIST's IDX format and its validation errors, the embedded digits, the loader."""
import gzip
import hashlib

import numpy as np
import pytest
import torch

from pipeline_lib.errors import UserError
from pipeline_lib.tasks.diffusion.checks import check_dataset
from pipeline_lib.tasks.diffusion.data import loader, prepare
from pipeline_lib.tasks.diffusion.idx import FILES, find_split_files, read_idx, read_split, write_idx
from pipeline_lib.tasks.diffusion.synthetic import generate_digits


def _mnist(root, n_train=30, n_val=20, size=12, gz=False, seed=0):
    """A folder with MNIST's four files of random images and balanced labels; returns {file name: array}."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for (images_name, labels_name), n in zip(FILES.values(), (n_train, n_val)):
        arrays[images_name] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        arrays[labels_name] = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    for name, array in arrays.items():
        write_idx(root / (name + (".gz" if gz else "")), array)
    return arrays


def _one_line_error(call, path, *fragments):
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (5, 9, 11)])
def test_idx_round_trip_plain_and_gzipped(tmp_path, suffix, shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / f"a{suffix}"
    write_idx(path, array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    header = gzip.decompress(raw)[:4] if suffix else raw[:4]
    assert header == bytes([0, 0, 8, len(shape)])  # MNIST's magics 0x00000801 and 0x00000803
    back = read_idx(path, len(shape))
    assert back.dtype == np.uint8 and np.array_equal(back, array)
    # Gzip is recognised by the content, not by the name.
    renamed = tmp_path / "renamed"
    renamed.write_bytes(raw)
    assert np.array_equal(read_idx(renamed, len(shape)), array)


def _labels_file(tmp_path, raw: bytes):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(raw)
    return path


GOOD_LABELS = bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4])


@pytest.mark.parametrize("raw, ndim, fragments", [
    (GOOD_LABELS[:3], 1, ["3 bytes, too short for an IDX header", "0x00000801"]),
    (GOOD_LABELS[:6], 1, ["6 bytes, too short for an IDX header"]),
    (bytes([1, 0]) + GOOD_LABELS[2:], 1, ["not an IDX file", "magic 0x01000801", "expected 0x00000801"]),
    (GOOD_LABELS[:2] + bytes([0x0D]) + GOOD_LABELS[3:], 1,
     ["type code 0x0d (float32)", "expected 0x08 (unsigned byte)"]),
    (GOOD_LABELS[:2] + bytes([0x42]) + GOOD_LABELS[3:], 1, ["0x42 (not a type code"]),
    (GOOD_LABELS, 3, ["1 dimensions; expected 3", "images (N x H x W)"]),
    (GOOD_LABELS[:-2], 1, ["4 = 4 bytes of data, the file holds 2", "2 bytes missing"]),
    (GOOD_LABELS + b"xyz", 1, ["3 extra bytes after the data"]),
])
def test_bad_idx_files_are_one_line_errors_naming_the_file(tmp_path, raw, ndim, fragments):
    path = _labels_file(tmp_path, raw)
    _one_line_error(lambda: read_idx(path, ndim), path, *fragments)
    gz = tmp_path / "gz"  # the same problems inside a gzipped file
    gz.write_bytes(gzip.compress(raw))
    _one_line_error(lambda: read_idx(gz, ndim), gz, *fragments)


def test_damaged_gzip_and_missing_file(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(GOOD_LABELS * 50)[:-12])
    _one_line_error(lambda: read_idx(path, 1), path, "damaged gzip data")
    missing = tmp_path / "nothing"
    _one_line_error(lambda: read_idx(missing, 1), missing, "not found")


def test_split_files_as_named_gzipped_or_dotted(tmp_path):
    write_idx(tmp_path / "train-images.idx3-ubyte", np.zeros((2, 8, 8), np.uint8))  # MNIST's other spelling
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    images, labels = find_split_files(tmp_path, "train")
    assert (images.name, labels.name) == ("train-images.idx3-ubyte", "train-labels-idx1-ubyte.gz")
    _one_line_error(lambda: find_split_files(tmp_path, "val"), tmp_path, "no val images file",
                    "t10k-images-idx3-ubyte, t10k-images-idx3-ubyte.gz")
    _one_line_error(lambda: find_split_files(tmp_path / "absent", "val"), tmp_path / "absent", "folder not found")


def test_split_errors_count_label_range_and_size(tmp_path):
    arrays = _mnist(tmp_path)
    images, labels = read_split(tmp_path, "train")
    assert np.array_equal(images, arrays["train-images-idx3-ubyte"]) and labels.shape == (30,)
    images_path, labels_path = tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte"
    dataset_cfg = {"path": str(tmp_path), "synthetic": {}}

    write_idx(labels_path, np.zeros(29, np.uint8))
    for call in (lambda: read_split(tmp_path, "train"), lambda: check_dataset(dataset_cfg)):
        _one_line_error(call, labels_path, "29 labels", f"{images_path} holds 30 images")

    bad = arrays["train-labels-idx1-ubyte"].copy()
    bad[[3, 7]] = [10, 200]
    write_idx(labels_path, bad)
    for call in (lambda: read_split(tmp_path, "train"), lambda: check_dataset(dataset_cfg)):
        _one_line_error(call, labels_path, "label 10 at index 3", "0..9")

    write_idx(labels_path, arrays["train-labels-idx1-ubyte"])
    write_idx(images_path, np.zeros((30, 6, 9), np.uint8))
    _one_line_error(lambda: read_split(tmp_path, "train"), images_path, "6x9", "at least 8x8")


@pytest.mark.parametrize("gz", [False, True])
def test_check_dataset_catches_a_truncated_images_file_without_reading_it_whole(tmp_path, gz):
    _mnist(tmp_path, gz=gz)
    images_path = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    read = check_dataset({"path": str(tmp_path), "synthetic": {}})
    assert tmp_path in read and images_path in read and len(read) == 5
    data = read_idx(images_path, 3).tobytes()
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 20, 0, 0, 0, 12, 0, 0, 0, 12]) + data[:-100]
    images_path.write_bytes(gzip.compress(raw) if gz else raw)
    _one_line_error(lambda: check_dataset({"path": str(tmp_path), "synthetic": {}}), images_path,
                    "100 bytes missing")
    assert check_dataset({"path": None, "synthetic": {}}) == []


def _digests(root):
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for pair in FILES.values() for name in pair}


def test_generator_is_deterministic_balanced_disjoint_and_mnist_like(tmp_path):
    a = generate_digits(tmp_path / "a", n_train=40, n_val=20, size=28, seed=3)
    b = generate_digits(tmp_path / "b", n_train=40, n_val=20, size=28, seed=3)
    c = generate_digits(tmp_path / "c", n_train=40, n_val=20, size=28, seed=4)
    assert _digests(a) == _digests(b)
    assert all(da != dc for da, dc in zip(_digests(a).values(), _digests(c).values()))

    train, train_labels = read_split(a, "train")
    val, val_labels = read_split(a, "val")
    assert train.shape == (40, 28, 28) and val.shape == (20, 28, 28)
    assert np.bincount(train_labels, minlength=10).tolist() == [4] * 10
    assert np.bincount(val_labels, minlength=10).tolist() == [2] * 10
    assert len(set(map(bytes, train)) & set(map(bytes, val))) == 0  # disjoint streams
    assert len(set(map(bytes, train))) == 40

    # White digits on black, MNIST-normalised: the box about 20 px, the centre of mass on the frame's centre.
    for image in train:
        ink = image.astype(np.float64)
        assert image.max() == 255 and image[0].max() == image[-1].max() == 0
        rows, cols = np.flatnonzero(ink.max(1) > 32), np.flatnonzero(ink.max(0) > 32)
        assert 14 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 23
        yy, xx = np.mgrid[0:28, 0:28]
        com = np.array([(ink * yy).sum(), (ink * xx).sum()]) / ink.sum()
        assert np.abs(com - 13.5).max() <= 1.0


def test_a_generated_image_depends_only_on_its_index(tmp_path):
    """Image i comes from its own stream: a larger dataset of the same seed draws the same digit the same way."""
    small, large = (generate_digits(tmp_path / str(n), n_train=n, n_val=10, seed=0) for n in (10, 20))
    images_s, labels_s = read_split(small, "train")
    images_l, labels_l = read_split(large, "train")
    for i in range(10):
        same = labels_s[i] == labels_l[i]
        assert np.array_equal(images_s[i], images_l[i]) == same
    _one_line_error(lambda: generate_digits(tmp_path / "x", n_train=1, n_val=1, style="gothic"),
                    "dataset.synthetic.style", "'gothic'", "mixed")


def test_prepare_user_folder_and_loader_batches(tmp_path):
    root = tmp_path / "mnist"
    arrays = _mnist(root, gz=True)
    manifest = prepare({"path": str(root), "synthetic": {}}, tmp_path / "out", seed=0)
    assert manifest["task"] == "diffusion" and manifest["names"] == [str(d) for d in range(10)]
    assert manifest["counts"]["train"] == {"images": 30, "per_class": [3] * 10}
    assert manifest["counts"]["val"]["images"] == 20
    assert set(manifest["checksums"]) == {name + ".gz" for name in arrays}
    item = manifest["splits"]["val"][0]
    assert item["images"] == str(root / "t10k-images-idx3-ubyte.gz")
    assert item["count"] == 20 and item["size"] == [12, 12]
    assert not (tmp_path / "out").exists()  # nothing generated for a user folder

    val = list(loader(manifest, "val", train=False, imgsz=12, batch_size=8, workers=0, seed=0))
    batch = val[0]
    assert batch["images"].shape == (8, 1, 12, 12) and batch["images"].dtype == torch.float32
    assert batch["labels"].shape == (8,) and batch["labels"].dtype == torch.int64
    images = torch.cat([b["images"] for b in val])
    assert torch.equal(images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255)  # in order
    assert torch.equal(torch.cat([b["labels"] for b in val]), torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())

    # Another size is resized with antialiasing; training batches are shuffled by the seed alone.
    first = [next(iter(loader(manifest, "train", train=True, imgsz=16, batch_size=10, workers=0, seed=s)))
             for s in (5, 5, 6)]
    assert first[0]["images"].shape == (10, 1, 16, 16)
    assert 0 <= first[0]["images"].min() and first[0]["images"].max() <= 1
    assert torch.equal(first[0]["labels"], first[1]["labels"]) and torch.equal(first[0]["images"], first[1]["images"])
    assert not torch.equal(first[0]["images"], first[2]["images"])


def test_prepare_embedded_digits(tmp_path):
    cfg = {"path": None, "synthetic": {"n_train": 20, "n_val": 10, "imgsz": 16, "style": "sans"}}
    manifest = prepare(cfg, tmp_path, seed=1)
    assert (tmp_path / "digits" / "train-images-idx3-ubyte").is_file()
    assert manifest["counts"]["train"] == {"images": 20, "per_class": [2] * 10}
    assert manifest["splits"]["train"][0]["size"] == [16, 16]
    batch = next(iter(loader(manifest, "val", train=False, imgsz=16, batch_size=10, workers=0, seed=0)))
    assert batch["images"].shape == (10, 1, 16, 16) and batch["images"].max() == 1.0 and batch["images"].min() == 0
