"""Pose's pictures: keypoints and the skeleton's limbs drawn on an image.

    draw_people(Path("val/000001.jpg"), [{"keypoints": [x, y, confidence] * K, "score": 0.8}], names, out,
                skeleton=[(0, 1), (0, 2)])   # the dataset's limbs, 0-based; None: COCO's person limbs by name

A dataset's own skeleton (its keypoints file's `categories[].skeleton`) is drawn as it is, so a
face's 68 landmarks are never joined by a person's limbs; without one (`predict` on a model alone)
only COCO's person limbs between keypoints of those names are drawn.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

__all__ = ["COCO_LIMBS", "draw_people"]

# COCO's person skeleton by keypoint name, so a dataset with other keypoint orders draws the same limbs.
COCO_LIMBS = [("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
              ("right_knee", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
              ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
              ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
              ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
              ("right_eye", "right_ear"), ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder")]
_LEFT, _RIGHT, _CENTRE = (255, 128, 0), (51, 153, 255), (0, 200, 0)


def _limbs(names: Sequence[str], skeleton) -> list[tuple[int, int]]:
    """Index pairs: the given skeleton, else COCO's person limbs between keypoints of those names."""
    if skeleton is not None:
        return [(int(a), int(b)) for a, b in skeleton]
    index = {name: i for i, name in enumerate(names)}
    return [(index[a], index[b]) for a, b in COCO_LIMBS if a in index and b in index]


def _side(names: Sequence[str], i: int) -> str:
    name = names[i] if i < len(names) else ""
    return "left" if name.startswith("left") else "right" if name.startswith("right") else ""


def draw_people(image_path: Path, people: list[dict], names: Sequence[str], out_path: Path,
                min_confidence: float = 0.2, skeleton: Sequence[Sequence[int]] | None = None) -> None:
    """Each person's keypoints above `min_confidence` (a ground-truth v > 0) and the limbs between
    two such keypoints (orange: both on the person's left, blue: both right, green: others)."""
    with Image.open(image_path) as im:
        image = im.convert("RGB")
    pen = ImageDraw.Draw(image)
    width = max(1, round(max(image.size) / 150))
    limbs = _limbs(names, skeleton)
    for person in people:
        kpts = [person["keypoints"][3 * i: 3 * i + 3] for i in range(len(person["keypoints"]) // 3)]
        seen = [c >= min_confidence for _, _, c in kpts]
        for i, j in limbs:
            if i < len(kpts) and j < len(kpts) and seen[i] and seen[j]:
                side = _side(names, i) if _side(names, i) == _side(names, j) else ""
                colour = {"left": _LEFT, "right": _RIGHT, "": _CENTRE}[side]
                pen.line([tuple(kpts[i][:2]), tuple(kpts[j][:2])], fill=colour, width=width)
        for (x, y, _), ok in zip(kpts, seen):
            if ok:
                pen.ellipse([x - width, y - width, x + width, y + width], fill=(255, 255, 255))
    image.save(out_path)
