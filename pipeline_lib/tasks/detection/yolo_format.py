"""The YOLO dataset format: read data.yaml, find each split's images and labels, validate them.

    check_yolo_dataset("data/shapes/data.yaml")    # the pre-run check: structure and labels, no decoding
    index = index_yolo_dataset("data/shapes/data.yaml")   # every image and label once, with checksums
    gt = coco_ground_truth(index["splits"]["val"], index["names"])

Layout (ultralytics convention): `data.yaml` holds `path` (root; relative to the yaml's folder),
`train`/`val` (under the root: an image folder, a .txt list of images, or a list of these),
`names` (list or {id: name}) and optionally `nc` (must equal the number of names); each image's labels
are in the same relative place with the last `images` folder replaced by `labels` and a `.txt`
suffix, one `cls cx cy w h` line per object, normalized to [0, 1]. A missing or empty label file
is a background image. Every problem is one UserError naming file:line and what to do.

Imports no torch: the preflight (before Snakemake schedules a job) runs `check_yolo_dataset`.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from PIL import Image

from ...errors import UserError
from ...fingerprint import dataset_file_sha256, portable_path
from ...io import read_yaml_mapping

__all__ = ["IMAGE_SUFFIXES", "load_data_yaml", "check_yolo_dataset", "index_yolo_dataset", "coco_ground_truth",
           "image_size"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_EXIF_ORIENTATION = 0x0112
SPLITS = ("train", "val")


def _names(path: Path, data: dict) -> list[str]:
    """Class names from `names` (a list, or {id: name} with ids 0..n-1 as numbers or digit strings,
    as ultralytics reads them) checked against `nc` when given."""
    names = data["names"]
    if isinstance(names, dict):
        kinds = {type(k) for k in names}
        if kinds == {str} and all(k.strip().isdigit() for k in names):
            names = {int(k): v for k, v in names.items()}  # ultralytics reads "0": a as 0: a
        elif kinds != {int}:
            raise UserError(f"{path}: names: class ids must all be numbers 0..{len(names) - 1} "
                            f"(found {', '.join(sorted(repr(k) for k in names))})")
        if sorted(names) != list(range(len(names))):
            raise UserError(f"{path}: names: ids must be 0..{len(names) - 1}, found {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise UserError(f"{path}: names: expected a non-empty list of class names or {{id: name}}")
    for i, name in enumerate(names):
        if name is None or isinstance(name, (list, dict)) or not str(name).strip():
            raise UserError(f"{path}: names: class {i} has no name ({name!r})")
    names = [str(n) for n in names]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if seen.setdefault(name, i) != i:
            raise UserError(f"{path}: names: {name!r} is both class {seen[name]} and class {i} (class names must differ)")
    if "nc" in data and data["nc"] != len(names):
        raise UserError(f"{path}: nc: {data['nc']!r} but names lists {len(names)} classes (make them agree, or drop nc)")
    return names


def load_data_yaml(path: str | Path) -> dict:
    """Read a data.yaml; return {"root": Path, "names": [...], "train": [Path, ...], "val": [Path, ...]}.

    `train`/`val` are what ultralytics accepts: a folder of images, a .txt file listing images
    (one path per line, relative to the list's folder or absolute), or a list of these.
    """
    path = Path(path)
    data = read_yaml_mapping(path, "data.yaml")
    for key in ("train", "val", "names"):
        if key not in data:
            raise UserError(f"{path}: missing key '{key}' (a YOLO data.yaml needs train, val and names)")
    names = _names(path, data)
    root = data.get("path") or "."
    if not isinstance(root, str):
        raise UserError(f"{path}: path: expected the dataset root folder, found {root!r}")
    root = Path(root) if Path(root).is_absolute() else (path.parent / root)
    spec = {"root": portable_path(root), "names": names}  # relative inside the project: it may move
    for split in SPLITS:
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        if not entries or not all(isinstance(e, str) and e for e in entries):
            raise UserError(f"{path}: {split}: expected an image folder, a .txt list of images, or a list of these")
        spec[split] = [spec["root"] / e for e in entries]
    return spec


def _split_images(data_yaml: Path, split: str, entries: list[Path]) -> tuple[list[Path], list[Path]]:
    """The images of a split, and the folders and list files they were found through."""
    images, read = [], []
    for entry in entries:
        if entry.is_dir():
            folders = [entry, *(p for p in entry.rglob("*") if p.is_dir())]
            read += folders
            images += sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif entry.is_file() and entry.suffix.lower() == ".txt":
            read.append(entry)
            for n, line in enumerate(entry.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                line = line.strip()
                if not line:
                    continue
                image = Path(line) if Path(line).is_absolute() else entry.parent / line
                if image.suffix.lower() not in IMAGE_SUFFIXES or not image.is_file():
                    raise UserError(f"{entry}:{n}: {line}: no such image ({', '.join(sorted(IMAGE_SUFFIXES))}; "
                                    "paths are relative to this list's folder)")
                images.append(image)
        elif entry.exists():
            raise UserError(f"{data_yaml}: {split}: {entry} is neither a folder of images nor a .txt list of images")
        else:
            raise UserError(f"{data_yaml}: {split}: {'list file' if entry.suffix == '.txt' else 'folder'} {entry} does not exist")
    if not images:
        raise UserError(f"{data_yaml}: {split}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in "
                        f"{', '.join(str(e) for e in entries)}")
    return images, read


def _label_path(image: Path, data_yaml: Path | None = None) -> Path:
    parts = list(image.parts)
    if "images" not in parts[:-1]:
        raise UserError(f"{data_yaml or image}: {image} has no 'images' folder in its path; YOLO labels are found by "
                        "replacing the last images/ with labels/ (put the images under .../images/...)")
    i = len(parts) - 2 - parts[-2::-1].index("images")
    return Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")


def _read_labels(path: Path, nc: int, data_yaml: Path) -> list[list[float]]:
    if not path.is_file():
        return []
    boxes = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{n}"
        if len(fields) != 5:
            raise UserError(f"{where}: expected 5 columns 'cls cx cy w h', found {len(fields)}")
        try:
            cls, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            raise UserError(f"{where}: not numbers: {line.strip()!r}") from None
        if not 0 <= cls < nc:
            raise UserError(f"{where}: class id {cls} out of range [0, {nc}) (fix the label or add the class to names in {data_yaml})")
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            raise UserError(f"{where}: coordinates must be normalized to [0, 1], found {' '.join(fields[1:])}")
        if values[2] <= 0 or values[3] <= 0:
            raise UserError(f"{where}: zero-area box (w and h must be > 0)")
        boxes.append([cls, *values])
    return boxes


def image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:  # verify() leaves the file unusable; reopen for the size
            w, h = im.size
            # Camera images may be stored sideways with an EXIF orientation tag; YOLO labels
            # refer to the upright image, which is what _read() returns.
            return (h, w) if im.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8) else (w, h)
    except Exception as e:
        raise UserError(f"{path}: unreadable image ({type(e).__name__}); remove it or replace it with a valid image") from None


def check_yolo_dataset(data_yaml: str | Path) -> list[Path]:
    """Structure and labels without decoding images (the pre-run check); return every file and
    folder it read, so a cache can tell when the dataset changed."""
    data_yaml = Path(data_yaml)
    spec = load_data_yaml(data_yaml)
    read = [data_yaml]
    for split in SPLITS:
        images, sources = _split_images(data_yaml, split, spec[split])
        read += sources
        for image in images:
            label = _label_path(image, data_yaml)
            _read_labels(label, len(spec["names"]), data_yaml)
            read += [image, label, label.parent]
    return read


def index_yolo_dataset(data_yaml: str | Path) -> dict:
    """Validate every image and label once; return names, per-split items and checksums."""
    data_yaml = Path(data_yaml)
    spec = load_data_yaml(data_yaml)
    names, splits, checksums = spec["names"], {}, {}
    for split in SPLITS:
        images, _ = _split_images(data_yaml, split, spec[split])
        items, digest = [], hashlib.sha256()
        for image_id, image in enumerate(images, 1):  # COCO ids start at 1
            label = _label_path(image, data_yaml)
            boxes = _read_labels(label, len(names), data_yaml)
            width, height = image_size(image)
            items.append({"image": str(image), "label": str(label) if label.is_file() else None,
                          "image_id": image_id, "width": width, "height": height, "boxes": boxes})
            for f in (image, label):
                if f.is_file():
                    named = f.relative_to(spec["root"]) if f.is_relative_to(spec["root"]) else f
                    digest.update(f"{named}:{dataset_file_sha256(f)}\n".encode())
        splits[split], checksums[split] = items, digest.hexdigest()
    return {"root": str(spec["root"]), "names": names, "nc": len(names), "splits": splits, "checksums": checksums}


def coco_ground_truth(items: list[dict], names: list[str]) -> dict:
    """COCO-format ground truth in original pixels; category ids are the YOLO class ids."""
    images, annotations = [], []
    for item in items:
        images.append({"id": item["image_id"], "file_name": Path(item["image"]).name,
                       "width": item["width"], "height": item["height"]})
        for cls, cx, cy, w, h in item["boxes"]:
            bw, bh = w * item["width"], h * item["height"]
            annotations.append({"id": len(annotations) + 1, "image_id": item["image_id"], "category_id": int(cls),
                                "bbox": [(cx * item["width"]) - bw / 2, (cy * item["height"]) - bh / 2, bw, bh],
                                "area": bw * bh, "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for i, n in enumerate(names)]}
