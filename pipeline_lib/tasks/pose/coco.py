"""COCO keypoints datasets: find the files, validate them once, index the people.

    index = index_coco_keypoints(Path("data/coco"))   # UserError naming file and annotation id on bad data
    index["names"], index["flip_pairs"]               # keypoint names; [[1, 2], [3, 4], ...] left/right pairs
    index["splits"]["train"][0]                       # {"image", "image_id", "id", "bbox", "keypoints", "size"}
    names, read = check_coco_keypoints(Path("data/coco"))  # the pre-run check: same rules, image headers only

Layout (`dataset.path`): a folder with `annotations/person_keypoints_<split>.json` and the images
of each split in `images/<split>/`, for the splits train and val. COCO 2017's own names also work:
`annotations/person_keypoints_<split>2017.json` with `<split>2017/` or `images/<split>2017/`.

The keypoint category (the one with a `keypoints` list) gives the names, the skeleton and, from
the `left_` / `right_` prefixes, the pairs a horizontal flip swaps: nothing assumes COCO's 17.
People with no labelled keypoint and crowd regions are kept in the evaluation ground truth (COCOeval
ignores them) but not indexed for training or cropping.

Imports no torch: the preflight (before Snakemake schedules a job) runs `check_coco_keypoints`.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ...errors import UserError
from ...fingerprint import dataset_file_sha256
from ...io import write_json

__all__ = ["SPLITS", "locate", "flip_pairs", "index_coco_keypoints", "check_coco_keypoints", "check_sigmas"]

SPLITS = ("train", "val")


def locate(root: Path) -> dict[str, tuple[Path, Path]]:
    """split -> (annotation JSON, image folder) under a dataset root; a UserError names what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found (dataset.path must hold annotations/ and images/)")
    found = {}
    for split in SPLITS:
        for tag in (split, f"{split}2017"):
            ann = root / "annotations" / f"person_keypoints_{tag}.json"
            if ann.is_file():
                images = next((d for d in (root / "images" / tag, root / tag) if d.is_dir()), None)
                if images is None:
                    raise UserError(f"{ann}: no image folder for it ({root / 'images' / tag} or {root / tag})")
                found[split] = (ann, images)
                break
        else:
            raise UserError(f"{root / 'annotations' / f'person_keypoints_{split}.json'}: missing "
                            f"(a pose dataset holds annotations/person_keypoints_{{train,val}}.json and images/{{train,val}}/)")
    return found


def flip_pairs(names: list[str], where: str) -> list[list[int]]:
    """Index pairs (left_x, right_x): a horizontal flip swaps their labels."""
    index = {n.lower(): i for i, n in enumerate(names)}
    pairs = []
    for name, i in index.items():
        for side, other in (("left_", "right_"), ("right_", "left_")):
            if name.startswith(side):
                partner = other + name[len(side):]
                if partner not in index:
                    raise UserError(f"{where}: keypoint {names[i]!r} has no {partner!r}: a flip would mislabel it "
                                    f"(name both sides left_<part> / right_<part>)")
                if side == "left_":
                    pairs.append([i, index[partner]])
    return pairs


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a COCO object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise UserError(f"{path}: missing list '{key}' (a COCO keypoints file has images, annotations, categories)")
    return data


def _category(path: Path, data: dict) -> dict:
    cats = [c for c in data["categories"] if isinstance(c, dict) and c.get("keypoints")]
    if len(cats) != 1:
        raise UserError(f"{path}: categories: expected exactly one category with a 'keypoints' list, found {len(cats)}")
    cat = cats[0]
    if not all(isinstance(n, str) for n in cat["keypoints"]):
        raise UserError(f"{path}: category {cat.get('id')}: keypoints must be a list of names")
    return cat


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_image(path: Path, where: str, width: int, height: int, verify: bool) -> None:
    """The image exists, its header decodes, its size is the JSON's; `verify` reads the file through
    (truncation shows then, not mid-training), else only the header is read (the pre-run check)."""
    if not path.is_file():
        raise UserError(f"{where}: file {path} is missing (add it or remove the image and its annotations)")
    try:
        with Image.open(path) as im:
            size = im.size
            if verify:
                im.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise UserError(f"{where}: {path} is not a readable image ({type(e).__name__}); replace or remove it") from None
    if size != (width, height):
        raise UserError(f"{where}: {path} is {size[0]}x{size[1]} but the JSON says {width}x{height}; fix width/height")


def _check_annotation(path: Path, ann: dict, images: dict, k: int) -> str | None:
    """The problem with one person annotation, or None."""
    image = images.get(ann.get("image_id"))
    if image is None:
        return f"image_id {ann.get('image_id')!r} is not in images"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
        return f"bbox {bbox!r} is not [x, y, w, h]"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"bbox {bbox} has no area (w and h must be > 0)"
    if x < -1 or y < -1 or x + w > image["width"] + 1 or y + h > image["height"] + 1:
        return f"bbox {bbox} leaves the {image['width']}x{image['height']} image"
    kps = ann.get("keypoints")
    if not (isinstance(kps, list) and all(_number(v) for v in kps)):
        return "keypoints must be a list of numbers [x, y, v, ...]"
    if len(kps) != 3 * k:
        return f"keypoints has {len(kps)} values; expected {k} keypoints x 3 = {3 * k}"
    for j in range(k):
        px, py, v = kps[3 * j: 3 * j + 3]
        if v not in (0, 1, 2):
            return f"keypoint {j} has visibility {v}; expected 0 (unlabelled), 1 (occluded) or 2 (visible)"
        if v > 0 and not (0 <= px <= image["width"] and 0 <= py <= image["height"]):
            return f"keypoint {j} at ({px}, {py}) lies outside the {image['width']}x{image['height']} image"
    labelled = sum(kps[3 * j + 2] > 0 for j in range(k))
    if "num_keypoints" in ann and ann["num_keypoints"] != labelled:
        return f"num_keypoints is {ann['num_keypoints']} but {labelled} keypoints are labelled (v > 0)"
    return None


def _images(ann_path: Path, data: dict, image_dir: Path, verify: bool) -> dict[int, dict]:
    """id -> image entry, each checked (`_check_image`)."""
    images = {}
    for im in data["images"]:
        if not (isinstance(im, dict) and isinstance(im.get("file_name"), str) and
                all(isinstance(im.get(key), int) for key in ("id", "width", "height"))):
            raise UserError(f"{ann_path}: image {im.get('id') if isinstance(im, dict) else im!r}: needs id, file_name, width and height")
        if im["id"] in images:
            raise UserError(f"{ann_path}: image {im['id']}: duplicate image id")
        _check_image(image_dir / im["file_name"], f"{ann_path}: image {im['id']}", im["width"], im["height"], verify)
        images[im["id"]] = im
    return images


def _annotations(ann_path: Path, data: dict, cat: dict, images: dict):
    """Each annotation of the keypoint category, checked, with its count of labelled keypoints."""
    k, seen = len(cat["keypoints"]), set()
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or ann.get("category_id") != cat["id"]:
            continue  # other categories: not people
        ann_id = ann.get("id")
        if ann_id is None or ann_id in seen:
            raise UserError(f"{ann_path}: annotation {ann_id!r}: {'missing' if ann_id is None else 'duplicate'} id")
        seen.add(ann_id)
        problem = _check_annotation(ann_path, ann, images, k)
        if problem:
            raise UserError(f"{ann_path}: annotation {ann_id} (image {ann.get('image_id')}): {problem}")
        yield ann, sum(ann["keypoints"][3 * j + 2] > 0 for j in range(k))


def _nobody(ann_path: Path) -> UserError:
    return UserError(f"{ann_path}: no person with a labelled keypoint (v > 0): nothing to train or evaluate on")


def _index_split(ann_path: Path, image_dir: Path, gt_path: Path) -> tuple[dict, list[dict], str]:
    """Validate one split; write its normalised ground truth; return (category, people, checksum)."""
    data = _read(ann_path)
    cat = _category(ann_path, data)
    images = _images(ann_path, data, image_dir, verify=True)
    digest = hashlib.sha256(f"{ann_path.name}:{dataset_file_sha256(ann_path)}\n".encode())
    for im in images.values():
        digest.update(f"{im['file_name']}:{dataset_file_sha256(image_dir / im['file_name'])}\n".encode())
    people, gt_anns = [], []
    for ann, labelled in _annotations(ann_path, data, cat, images):
        x, y, w, h = ann["bbox"]
        gt_anns.append({**ann, "num_keypoints": labelled, "iscrowd": int(ann.get("iscrowd", 0)),
                        "area": float(ann.get("area", w * h))})
        if labelled and not ann.get("iscrowd", 0):
            im = images[ann["image_id"]]
            people.append({"image": str(image_dir / im["file_name"]), "image_id": im["id"], "id": ann["id"],
                           "bbox": [float(v) for v in ann["bbox"]], "keypoints": [float(v) for v in ann["keypoints"]],
                           "size": [im["width"], im["height"]]})
    if not people:
        raise _nobody(ann_path)
    # COCOeval reads num_keypoints, iscrowd and area: write them all, whatever the source left out
    write_json(gt_path, {"images": list(images.values()), "annotations": gt_anns,
                         "categories": [{**cat, "skeleton": cat.get("skeleton", [])}]})
    return cat, people, digest.hexdigest()


def _keypoint_names(files: dict, cats: dict) -> list[str]:
    """The keypoint names both splits share (UserError when they differ, or a flip cannot pair them)."""
    names = cats["train"]["keypoints"]
    if cats["val"]["keypoints"] != names:
        raise UserError(f"{files['val'][0]}: keypoint names differ from {files['train'][0]}'s (both splits must "
                        "name the same keypoints in the same order)")
    flip_pairs(names, f"{files['train'][0]}: categories")
    return list(names)


def check_coco_keypoints(root: Path) -> tuple[list[str], list[Path]]:
    """The pre-run check: both splits' JSON, annotations and image headers (no pixel decoding, no
    files written); return the keypoint names and every file and folder read."""
    files = locate(root)
    read, cats = [Path(root), Path(root) / "annotations"], {}
    for split, (ann_path, image_dir) in files.items():
        data = _read(ann_path)
        cats[split] = _category(ann_path, data)
        images = _images(ann_path, data, image_dir, verify=False)
        people = [ann for ann, labelled in _annotations(ann_path, data, cats[split], images)
                  if labelled and not ann.get("iscrowd", 0)]
        if not people:
            raise _nobody(ann_path)
        read += [ann_path, image_dir, *(image_dir / im["file_name"] for im in images.values())]
    return _keypoint_names(files, cats), read


def check_sigmas(sigmas: list[float], k: int, where: str) -> list[float]:
    """`evaluate.sigmas` holds one OKS constant per keypoint (UserError naming the key otherwise)."""
    if len(sigmas) != k:
        raise UserError(f"evaluate.sigmas: {len(sigmas)} values for the {k} keypoints of {where} "
                        "(give one OKS sigma per keypoint, in their order)")
    return list(sigmas)


def index_coco_keypoints(root: Path, gt_dir: Path) -> dict:
    """Validate both splits; write `gt_dir/person_keypoints_<split>.json` (what COCOeval reads); index the people."""
    files = locate(root)
    splits, checksums, counts, gt, cats = {}, {}, {}, {}, {}
    for split, (ann_path, image_dir) in files.items():
        gt[split] = str(Path(gt_dir) / f"person_keypoints_{split}.json")
        cats[split], splits[split], checksums[split] = _index_split(ann_path, image_dir, Path(gt[split]))
        counts[split] = {"images": len({p["image_id"] for p in splits[split]}), "people": len(splits[split]),
                         "keypoints": sum(sum(v > 0 for v in p["keypoints"][2::3]) for p in splits[split])}
    names = _keypoint_names(files, cats)
    return {"root": str(Path(root).resolve()), "names": names, "skeleton": cats["train"].get("skeleton", []),
            "flip_pairs": flip_pairs(names, f"{files['train'][0]}: categories"), "category_id": cats["train"]["id"],
            "coco_gt": gt, "image_dirs": {s: str(d) for s, (_, d) in files.items()},
            "counts": counts, "checksums": checksums, "splits": splits}
