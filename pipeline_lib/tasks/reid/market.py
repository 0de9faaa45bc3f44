"""The Market-1501 folder layout: parse names, validate once, index the splits.

    index = index_market(Path("data/Market-1501-v15.09.15"))   # UserError names the file on bad data
    index_market(root, verify_images=False)                    # the pre-run check: names and layout

Layout: `bounding_box_train/` (training identities), `query/` and `bounding_box_test/` (the
gallery). A name is `PPPP_cCsS_FFFFFF_NN.jpg`: person id (`-1` = junk, dropped; `0000` =
distractor, kept in the gallery), camera C, sequence S, frame and box number.

Imports no torch: the preflight (before Snakemake schedules a job) runs it.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ...errors import UserError
from ...fingerprint import dataset_file_sha256

__all__ = ["SPLIT_DIRS", "NAME_PATTERN", "parse_name", "index_market"]

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAME_PATTERN = re.compile(r"^(-1|\d{4})_c(\d)s(\d+)_(\d+)_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
EXAMPLE = "0002_c1s1_000451_03.jpg"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def parse_name(path: str | Path) -> tuple[int, int]:
    """(pid, camid) of a Market-1501 file name; pid -1 marks junk, 0 a distractor."""
    path = Path(path)
    m = NAME_PATTERN.match(path.name)
    if m is None:
        raise UserError(f"{path}: not a Market-1501 name (expected PPPP_cCsS_FFFFFF_NN.jpg, e.g. {EXAMPLE}); rename or remove it")
    pid, camid = int(m.group(1)), int(m.group(2))
    if camid < 1:
        raise UserError(f"{path}: camera id c{camid}: camera ids start at 1 (c1..c9)")
    return pid, camid


def _check_image(path: Path) -> None:
    try:
        with Image.open(path) as im:
            im.verify()  # reads the whole file: catches truncation without decoding pixels twice
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise UserError(f"{path}: unreadable image ({type(e).__name__}); remove it or replace it with a valid image") from None


def index_market(root: str | Path, verify_images: bool = True) -> dict:
    """Validate every file once; return per-split items, train label names, counts and checksums.

    Train labels are the train pids mapped to 0..nc-1 in sorted order. Errors (one line, naming
    the file): missing split folder, a file that is not a Market-1501 name or not an image, junk
    or distractor ids where they cannot be, and a query set with no match in the gallery.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found (dataset.path must be a Market-1501 root)")
    for folder_name in SPLIT_DIRS.values():
        if not (root / folder_name).is_dir():
            raise UserError(f"{root / folder_name}: missing; a Market-1501 root holds {', '.join(SPLIT_DIRS.values())}")
    splits, checksums, dropped = {}, {}, {}
    for split, folder_name in SPLIT_DIRS.items():
        folder = root / folder_name
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        # Market-1501 ships Thumbs.db in some folders: non-image files are skipped, badly named images are errors.
        files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        items, digest, dropped[split] = [], hashlib.sha256(), 0
        for path in files:
            pid, camid = parse_name(path)
            if pid == -1:  # junk: detector false alarms and fragments, not part of the protocol
                dropped[split] += 1
                continue
            if pid == 0 and split != "gallery":
                raise UserError(f"{path}: distractor id 0000 outside {SPLIT_DIRS['gallery']}/ (distractors belong to the gallery only)")
            items.append({"image": str(path), "pid": pid, "camid": camid})
            if verify_images:  # off for the pre-run check: names and layout only
                _check_image(path)
                digest.update(f"{folder_name}/{path.name}:{dataset_file_sha256(path)}\n".encode())
        if not items:
            raise UserError(f"{folder}: no usable images (named PPPP_cCsS_FFFFFF_NN.jpg with pid >= 0)")
        splits[split], checksums[split] = items, digest.hexdigest()

    train_pids = sorted({it["pid"] for it in splits["train"]})
    label = {pid: i for i, pid in enumerate(train_pids)}
    for it in splits["train"]:
        it["label"] = label[it["pid"]]
    gallery = {(it["pid"], it["camid"]) for it in splits["gallery"]}
    gallery_pids = {pid for pid, _ in gallery}
    # Market-1501 protocol: a gallery image of the query's id from the query's own camera is not a match.
    matched = [q for q in splits["query"] if q["pid"] in gallery_pids and
               any(c != q["camid"] for p, c in gallery if p == q["pid"])]
    if not matched:
        raise UserError(f"{root / SPLIT_DIRS['query']}: no query has a gallery image of its id from another camera; "
                        "mAP and CMC would be undefined (check that query and gallery share identities)")
    counts = {split: {"images": len(items), "ids": len({it["pid"] for it in items}), "junk_dropped": dropped[split]}
              for split, items in splits.items()}
    counts["query"]["with_match"] = len(matched)
    cams = sorted({it["camid"] for items in splits.values() for it in items})
    return {"root": str(root.resolve()), "names": [f"{pid:04d}" for pid in train_pids], "nc": len(train_pids),
            "cameras": cams, "splits": splits, "counts": counts, "checksums": checksums}
