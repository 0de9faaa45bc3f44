"""Pose's pictures: keypoints and the skeleton's limbs drawn on an image.

    draw_people(Path("val/000001.jpg"), [{"keypoints": [x, y, confidence] * K, "score": 0.8}], names, out)
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


def draw_people(image_path: Path, people: list[dict], names: Sequence[str], out_path: Path,
                min_confidence: float = 0.2) -> None:
    """Each person's keypoints above `min_confidence` and the limbs between two such keypoints
    (orange: the person's left, blue: right)."""
    with Image.open(image_path) as im:
        image = im.convert("RGB")
    pen = ImageDraw.Draw(image)
    index = {name: i for i, name in enumerate(names)}
    width = max(1, round(max(image.size) / 150))
    for person in people:
        kpts = [person["keypoints"][3 * i: 3 * i + 3] for i in range(len(person["keypoints"]) // 3)]
        seen = [c >= min_confidence for _, _, c in kpts]
        for a, b in COCO_LIMBS:
            i, j = index.get(a), index.get(b)
            if i is not None and j is not None and i < len(kpts) and j < len(kpts) and seen[i] and seen[j]:
                colour = _LEFT if a.startswith("left") and b.startswith("left") else \
                    _RIGHT if a.startswith("right") and b.startswith("right") else _CENTRE
                pen.line([tuple(kpts[i][:2]), tuple(kpts[j][:2])], fill=colour, width=width)
        for (x, y, _), ok in zip(kpts, seen):
            if ok:
                pen.ellipse([x - width, y - width, x + width, y + width], fill=(255, 255, 255))
    image.save(out_path)
