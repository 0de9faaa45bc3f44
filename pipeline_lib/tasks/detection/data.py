"""YOLO-format detection data: validate once, load, augment (mosaic + transforms.v2), collate.

    index = index_yolo_dataset("data/shapes/data.yaml")        # UserError names file:line on bad data
    ds = YoloDataset(index["splits"]["train"], imgsz=128, augment=DEFAULT_AUGMENT, seed=0)
    batch = collate([ds[0], ds[1]])                              # images (2,3,128,128), targets (N,6)

Layout (ultralytics convention): `data.yaml` holds `path` (root; relative to the yaml's folder),
`train`/`val` (under the root: an image folder, a .txt list of images, or a list of these),
`names` (list or {id: name}) and optionally `nc` (must equal the number of names); each image's labels
are in the same relative place with the last `images` folder replaced by `labels` and a `.txt`
suffix, one `cls cx cy w h` line per object, normalized to [0, 1]. A missing or empty label file
is a background image.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import box_convert
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ...errors import UserError
from ...io import read_yaml_mapping, sha256_file

__all__ = ["IMAGE_SUFFIXES", "DEFAULT_AUGMENT", "load_data_yaml", "check_yolo_dataset", "index_yolo_dataset",
           "coco_ground_truth",
           "YoloDataset", "collate", "scale_boxes_to_original"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
DEFAULT_AUGMENT = {"mosaic": 1.0, "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0,
                   "fliplr": 0.5, "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4}
_EXIF_ORIENTATION = 0x0112
PAD = 114  # YOLOv5's grey for letterbox borders and mosaic background
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
    spec = {"root": root.resolve(), "names": names}
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


def _image_size(path: Path) -> tuple[int, int]:
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
            width, height = _image_size(image)
            items.append({"image": str(image), "label": str(label) if label.is_file() else None,
                          "image_id": image_id, "width": width, "height": height, "boxes": boxes})
            for f in (image, label):
                if f.is_file():
                    digest.update(f"{f.relative_to(spec['root']) if f.is_relative_to(spec['root']) else f}:{sha256_file(f)}\n".encode())
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


class YoloDataset(Dataset):
    """Images and boxes at `imgsz`×`imgsz`: letterboxed for eval, mosaic + random affine + colour for training.

    A sample depends only on (seed, epoch, index) — not on worker count or call order — because
    each __getitem__ runs under its own forked, reseeded RNG. The engine calls set_epoch.
    """

    def __init__(self, items: list[dict], imgsz: int, augment: dict | None = None, seed: int = 0,
                 cache_bytes: int = 2 << 30):
        self.items, self.imgsz, self.seed, self.epoch = items, imgsz, seed, 0
        # Decoded images stay in RAM when they fit in `cache_bytes` (YOLOv5's --cache ram): loaded
        # here, before DataLoader workers fork, so every worker shares one copy.
        fits = 3 * imgsz * imgsz * len(items) <= cache_bytes
        self.cache = [self._read(i) for i in range(len(items))] if fits else None
        self.augment = None if augment is None else {**DEFAULT_AUGMENT, **augment}
        if self.augment is not None:
            a = self.augment
            self.affine = v2.RandomAffine(degrees=a["degrees"], translate=(a["translate"], a["translate"]),
                                          scale=(1 - a["scale"], 1 + a["scale"]), shear=a["shear"], fill=PAD)
            self.colour = v2.ColorJitter(brightness=a["hsv_v"], saturation=a["hsv_s"], hue=a["hsv_h"])

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image resized so its long side is imgsz (uint8 (3, h, w)) and its boxes in those pixels (n, 5)."""
        if self.cache is None:
            return self._read(i)
        image, labels = self.cache[i]
        return image, labels.clone()  # callers shift boxes in place

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[i]
        with Image.open(item["image"]) as im:
            image = F.pil_to_tensor(ImageOps.exif_transpose(im).convert("RGB"))  # uint8 (3, h, w)
        h0, w0 = image.shape[-2:]
        r = self.imgsz / max(h0, w0)
        h, w = max(round(h0 * r), 1), max(round(w0 * r), 1)
        if (h, w) != (h0, w0):
            image = F.resize(image, [h, w], antialias=True)
        labels = torch.tensor(item["boxes"], dtype=torch.float32).reshape(-1, 5)
        xyxy = box_convert(labels[:, 1:], "cxcywh", "xyxy") * torch.tensor([w, h, w, h])
        return image, torch.cat((labels[:, :1], xyxy), 1)

    def _letterbox(self, i: int) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]]:
        image, labels = self._load(i)
        h, w = image.shape[-2:]
        pw, ph = (self.imgsz - w) / 2, (self.imgsz - h) / 2
        left, top = int(round(pw - 0.1)), int(round(ph - 0.1))
        image = F.pad(image, [left, top, self.imgsz - w - left, self.imgsz - h - top], fill=PAD)
        labels[:, 1:] += torch.tensor([left, top, left, top])
        ratio = self.imgsz / max(self.items[i]["width"], self.items[i]["height"])
        return image, labels, (ratio, float(left), float(top))

    def _mosaic(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Four images around a random centre of a 2s×2s canvas (YOLOv5), then the central s×s window."""
        s = self.imgsz
        xc, yc = (int(v) for v in rng.uniform(0.5 * s, 1.5 * s, size=2))
        canvas = torch.full((3, 2 * s, 2 * s), PAD, dtype=torch.uint8)
        parts = []
        for k, j in enumerate([i, *rng.integers(0, len(self.items), size=3)]):
            image, labels = self._load(int(j))
            h, w = image.shape[-2:]
            x0, y0 = (xc - w if k in (0, 2) else xc), (yc - h if k in (0, 1) else yc)
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, 2 * s), min(y0 + h, 2 * s)
            canvas[:, cy0:cy1, cx0:cx1] = image[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            labels[:, 1:] += torch.tensor([x0, y0, x0, y0])
            parts.append(labels)
        return canvas, torch.cat(parts)

    def _augment(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        s, a = self.imgsz, self.augment
        if rng.random() < a["mosaic"]:
            image, labels = self._mosaic(i, rng)
        else:
            image, labels, _ = self._letterbox(i)
        size = image.shape[-1]
        boxes = tv_tensors.BoundingBoxes(labels[:, 1:], format="XYXY", canvas_size=(size, size))
        area0 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        image, boxes = self.affine(tv_tensors.Image(image), boxes)
        off = (size - s) // 2  # central s×s window (the whole image when there is no mosaic)
        image = image[:, off:off + s, off:off + s]
        xyxy = (boxes.as_subclass(torch.Tensor) - off).clamp(0, s)
        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        # Keep boxes that stay > 2 px and keep a tenth of their area (YOLOv5's box_candidates);
        # affine scale is at least 1 - augment.scale, so a whole object always passes.
        keep = (w > 2) & (h > 2) & (w * h > 0.1 * area0)
        image = self.colour(image)
        labels = torch.cat((labels[keep, :1], xyxy[keep]), 1)
        if rng.random() < a["fliplr"]:
            image = F.horizontal_flip(image)
            labels[:, [1, 3]] = s - labels[:, [3, 1]]
        return image.as_subclass(torch.Tensor), labels

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        if self.augment is None:
            image, labels, ratio_pad = self._letterbox(i)
        else:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image, labels = self._augment(i, np.random.default_rng(seed))
            ratio_pad = (1.0, 0.0, 0.0)
        s = self.imgsz
        boxes = box_convert(labels[:, 1:], "xyxy", "cxcywh") / s
        return {"image": image.float() / 255, "boxes": boxes.float(), "classes": labels[:, 0].long(),
                "image_id": item["image_id"], "orig_size": (item["height"], item["width"]), "ratio_pad": ratio_pad}


def collate(batch: list[dict]) -> dict:
    """Stack images; targets as YOLOv5 rows [batch_index, cls, cx, cy, w, h] (normalized)."""
    targets = [torch.cat((torch.full((len(b["classes"]), 1), float(k)), b["classes"][:, None].float(), b["boxes"]), 1)
               for k, b in enumerate(batch)]
    return {"images": torch.stack([b["image"] for b in batch]),
            "targets": torch.cat(targets) if targets else torch.zeros(0, 6),
            "image_ids": torch.tensor([b["image_id"] for b in batch], dtype=torch.int64),
            "orig_sizes": torch.tensor([b["orig_size"] for b in batch], dtype=torch.float32),
            "ratio_pad": torch.tensor([b["ratio_pad"] for b in batch], dtype=torch.float32)}


def scale_boxes_to_original(boxes: torch.Tensor, ratio_pad: torch.Tensor, orig_size) -> torch.Tensor:
    """Undo the letterbox: (n, 4) xyxy in network pixels -> original image pixels, clipped."""
    ratio, pad_w, pad_h = (float(v) for v in ratio_pad)
    h, w = (float(v) for v in orig_size)
    out = (boxes - torch.tensor([pad_w, pad_h, pad_w, pad_h], dtype=boxes.dtype)) / ratio
    return torch.stack((out[:, 0].clamp(0, w), out[:, 1].clamp(0, h), out[:, 2].clamp(0, w), out[:, 3].clamp(0, h)), 1)
