"""Market-1501 layout: name parsing, validation errors that name the file, the synthetic generator, P×K batches."""
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from pipeline_lib.errors import UserError
from pipeline_lib.tasks.reid.task import TASK
from pipeline_lib.tasks.reid.data import ReIDDataset
from pipeline_lib.tasks.reid.market import index_market, parse_name
from pipeline_lib.tasks.reid.sampler import PKSampler
from pipeline_lib.tasks.reid.synthetic import generate_market


@pytest.mark.parametrize("name, expected", [
    ("0002_c1s1_000451_03.jpg", (2, 1)),
    ("1501_c6s4_001877_01.jpg", (1501, 6)),
    ("0000_c3s2_000123_02.jpg", (0, 3)),  # distractor
    ("-1_c2s1_000051_01.jpg", (-1, 2)),  # junk
])
def test_market_names_parse_to_pid_and_camera(name, expected):
    assert parse_name(name) == expected


@pytest.mark.parametrize("name", ["002_c1s1_000451_03.jpg", "0002_s1_000451_03.jpg", "0002-c1s1-000451-03.jpg",
                                  "0002_c0s1_000451_03.jpg"])
def test_bad_names_are_one_line_errors_naming_the_file(name):
    with pytest.raises(UserError, match=rf"^{name}: ") as info:
        parse_name(name)
    assert "\n" not in str(info.value)


def _market(root, files):
    """A Market-1501 tree with the given {split folder: [names]} of tiny valid JPEGs."""
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for folder, names in files.items():
        for n in names:
            Image.new("RGB", (16, 32), (n.__hash__() % 255, 80, 90)).save(root / folder / n)
    return root


GOOD = {"bounding_box_train": ["0001_c1s1_000001_01.jpg", "0001_c2s1_000002_01.jpg", "0003_c1s1_000003_01.jpg"],
        "query": ["0005_c1s1_000004_01.jpg", "0007_c2s1_000005_01.jpg"],
        "bounding_box_test": ["0005_c1s1_000006_01.jpg", "0005_c3s1_000007_01.jpg", "0000_c1s1_000008_01.jpg",
                              "-1_c1s1_000009_01.jpg", "0007_c2s1_000010_01.jpg"]}


def test_index_drops_junk_keeps_distractors_and_maps_train_labels(tmp_path):
    index = index_market(_market(tmp_path, GOOD))
    gallery = [(it["pid"], it["camid"]) for it in index["splits"]["gallery"]]
    assert (0, 1) in gallery and all(pid != -1 for pid, _ in gallery)
    assert index["counts"]["gallery"]["junk_dropped"] == 1
    assert index["names"] == ["0001", "0003"] and index["nc"] == 2
    assert [it["label"] for it in index["splits"]["train"]] == [0, 0, 1]
    # 0007's only gallery image shares its camera: that query has no valid match (skipped at evaluation).
    assert index["counts"]["query"]["with_match"] == 1


@pytest.mark.parametrize("folder, name, message", [
    ("query", "0005_c1s1_000011.jpg", "not a Market-1501 name"),
    ("query", "0000_c1s1_000011_01.jpg", "distractor id 0000 outside"),
    ("bounding_box_train", "0000_c1s1_000011_01.jpg", "distractor id 0000 outside"),
])
def test_validation_errors_name_the_file(tmp_path, folder, name, message):
    root = _market(tmp_path, {**GOOD, folder: GOOD[folder] + [name]})
    with pytest.raises(UserError, match=message) as info:
        index_market(root)
    assert str(info.value).startswith(str(root / folder / name) + ":")


def test_corrupt_image_and_missing_folder_and_no_match_are_errors(tmp_path):
    root = _market(tmp_path / "a", GOOD)
    bad = root / "bounding_box_test" / "0005_c3s1_000007_01.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(UserError, match=rf"^{bad}: unreadable image"):
        index_market(root)
    with pytest.raises(UserError, match=r"query: missing"):
        index_market(_missing(tmp_path / "b"))
    no_match = {**GOOD, "bounding_box_test": ["0005_c1s1_000006_01.jpg", "0000_c1s1_000008_01.jpg"]}
    with pytest.raises(UserError, match="no query has a gallery image of its id from another camera"):
        index_market(_market(tmp_path / "c", no_match))


def _missing(root):
    (root / "bounding_box_train").mkdir(parents=True)
    return root


def test_generator_writes_a_valid_deterministic_market_layout(tmp_path):
    a = generate_market(tmp_path / "a", n_train_ids=6, n_test_ids=4, height=64, seed=3, difficulty=0.5)
    b = generate_market(tmp_path / "b", n_train_ids=6, n_test_ids=4, height=64, seed=3, difficulty=0.5)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.jpg"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    index = index_market(a)
    assert index["nc"] == 6 and index["counts"]["query"]["ids"] == 4
    assert {it["pid"] for it in index["splits"]["gallery"]} >= {0}  # distractors present
    assert Image.open(a / files_a[0]).size == (32, 64)
    train_cams = Counter(it["label"] for it in index["splits"]["train"])
    assert min(train_cams.values()) >= 4  # 2+ cameras x 2+ shots: enough for K=4
    # Every query's identity is in the gallery from another camera (the generator's promise).
    assert index["counts"]["query"]["with_match"] == index["counts"]["query"]["images"]


def test_pk_sampler_batches_hold_p_identities_with_k_images_each():
    labels = [i // 5 for i in range(50)] + [10, 10]  # ten ids with five images, one id with two
    sampler = PKSampler(labels, p=4, k=3, seed=0)
    assert len(sampler) == (52 // 12) * 12
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler)
        for start in range(0, len(order), 12):
            batch = [labels[i] for i in order[start:start + 12]]
            assert list(Counter(batch).values()) == [3, 3, 3, 3]
            assert batch == sorted(batch, key=batch.index)  # each identity's K images are consecutive
    sampler.set_epoch(1)
    again = list(sampler)
    sampler.set_epoch(2)
    assert again != list(sampler)
    sampler.set_epoch(1)
    assert again == list(sampler)


def test_pk_sampler_visits_every_identity_evenly():
    labels = np.repeat(np.arange(8), 6).tolist()
    sampler = PKSampler(labels, p=2, k=2, seed=1)  # 12 batches = 24 identity slots = 3 rounds of 8
    seen = Counter(labels[i] for i in sampler)
    assert set(seen.values()) == {6}


def test_train_loader_yields_pk_batches_and_rejects_bad_batch_size(tmp_path):
    root = generate_market(tmp_path / "m", n_train_ids=6, n_test_ids=3, height=64, seed=0, difficulty=0.3)
    manifest = {"task": "reid", **index_market(root)}
    loader = TASK.loader(manifest, "train", train=True, imgsz=[32, 16], batch_size=8, workers=0, seed=0,
                         augment={"instances": 4, "pad": 2, "erasing": 0.5, "fliplr": 0.5})
    batch = next(iter(loader))
    assert batch["images"].shape == (8, 3, 32, 16)
    assert sorted(Counter(batch["labels"].tolist()).values()) == [4, 4]
    assert hasattr(loader.sampler, "set_epoch")  # the engine reshuffles through it
    with pytest.raises(UserError, match=r"train.batch_size: 10 must be a multiple of train.augment.instances \(4\)"):
        TASK.loader(manifest, "train", train=True, imgsz=32, batch_size=10, workers=0, seed=0, augment={"instances": 4})
    with pytest.raises(UserError, match="has only 6"):
        TASK.loader(manifest, "train", train=True, imgsz=32, batch_size=32, workers=0, seed=0, augment={"instances": 4})
    val = TASK.loader(manifest, "val", train=False, imgsz=[32, 16], batch_size=64, workers=0, seed=0)
    flags = [bool(item.get("query")) for item in val.dataset.items]
    assert flags == sorted(flags, reverse=True) and sum(flags) == manifest["counts"]["query"]["images"]


def test_augmentation_depends_only_on_seed_epoch_and_index(tmp_path):
    root = generate_market(tmp_path / "m", n_train_ids=4, n_test_ids=2, height=64, seed=0, difficulty=0.3)
    items = index_market(root)["splits"]["train"]
    ds = ReIDDataset(items, (32, 16), {"instances": 4}, seed=0)
    first = ds[1]["images"]
    ds[0], ds[2]
    assert ds[1]["images"].equal(first)
    ds.set_epoch(1)
    assert not ds[1]["images"].equal(first)


def test_pk_sampler_ranks_share_one_sequence_without_overlap():
    labels = np.repeat(np.arange(12), 4).tolist()
    whole = list(PKSampler(labels, p=2, k=4, seed=0))
    ranks = [list(PKSampler(labels, p=2, k=4, seed=0, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole) // 2
    # Rank r takes global batches r, r + 2, ...: interleaved they are the single-process sequence.
    interleaved = [int(i) for pair in zip(*(np.reshape(r, (-1, 8)) for r in ranks)) for batch in pair for i in batch]
    assert interleaved == whole
