"""Deterministic synthetic shapes dataset written in the standard YOLO layout.

    data_yaml = generate_synthetic("results/data/shapes", n_train=400, n_val=100, seed=0)

Layout: `images/{train,val}/NNNNNN.png`, `labels/{train,val}/NNNNNN.txt` (`cls cx cy w h`,
normalized, 6 decimals) and `data.yaml` (`path`, `train`, `val`, `nc`, `names`), so the real
YOLO loader in `data.py` is the only loader. Same seed -> byte-identical files.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from pipeline_lib.io import write_text

__all__ = ["NAMES", "generate_synthetic", "render_image"]

NAMES = ["circle", "square", "triangle", "star", "cross"]
SIZE_RANGE = (0.08, 0.5)  # object extent as a fraction of the image side
MAX_OBJECTS = 6
MAX_COVERED = 0.6  # an object may lose at most this fraction of its pixels to later objects
MIN_VISIBLE_INSIDE = 0.7  # fraction of an object's extent that stays inside the image


def _unit_polygon(cls: int) -> np.ndarray:
    """Vertices (k, 2) of class `cls` in a unit radius frame (circle is drawn as a 48-gon)."""
    name = NAMES[cls]
    if name == "circle":
        a = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], 1)
    if name in ("square", "triangle"):
        k = 4 if name == "square" else 3
        a = np.arange(k) * 2 * np.pi / k
        return np.stack([np.cos(a), np.sin(a)], 1)
    if name == "star":
        a = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    t = 0.3  # cross: a plus sign with arms of half-width t
    return np.array([[t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1],
                     [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t], [-t, -1]])


def _background(rng: np.random.Generator, size: int, difficulty: float) -> Image.Image:
    """Solid, gradient or blotchy-noise canvas, then clutter (lines, arcs, small dots) that is no object."""
    kind = rng.integers(3)
    c0, c1 = rng.uniform(0, 255, (2, 3))
    if kind == 0:
        arr = np.broadcast_to(c0, (size, size, 3))
    elif kind == 1:
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        t = (xx * math.cos(a) + yy * math.sin(a) + 1.5) / 3  # in (0, 1) for every angle
        arr = c0 + t[..., None] * (c1 - c0)
    else:
        cells = rng.uniform(0, 255, (int(rng.integers(3, 9)),) * 2 + (3,)).astype(np.uint8)
        arr = np.asarray(Image.fromarray(cells).resize((size, size), Image.BILINEAR), dtype=np.float64)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.poisson(1 + 8 * difficulty)):
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        p = rng.uniform(0, size, 4)
        kind = rng.integers(3)
        if kind == 0:
            draw.line(p.tolist(), fill=col, width=int(rng.integers(1, 3)))
        elif kind == 1:
            x0, y0 = p[:2]
            r = rng.uniform(0.1, 0.3) * size
            draw.arc([x0 - r, y0 - r, x0 + r, y0 + r], *rng.uniform(0, 360, 2), fill=col, width=1)
        else:  # dots well below the smallest object so they are never a missed label
            r = rng.uniform(0.5, 0.025 * size)
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=col)
    return img


def render_image(rng: np.random.Generator, size: int, difficulty: float) -> tuple[Image.Image, list[tuple]]:
    """Draw one image; return it with its labels [(cls, x0, y0, x1, y1) in pixels, tight and clipped]."""
    img = _background(rng, size, difficulty)
    canvas = np.asarray(img, dtype=np.float64).copy()
    masks: list[np.ndarray] = []  # visible pixels of each placed object
    areas: list[int] = []  # its drawn pixels before anything covered it
    labels: list[tuple] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _attempt in range(10):
            cls = int(rng.integers(len(NAMES)))
            r = rng.uniform(*SIZE_RANGE) * size / 2
            lo, hi = r * (2 * MIN_VISIBLE_INSIDE - 1), size - r * (2 * MIN_VISIBLE_INSIDE - 1)
            cx, cy = rng.uniform(lo, hi, 2)
            a = rng.uniform(0, 2 * np.pi)
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            pts = _unit_polygon(cls) @ rot.T * r + (cx, cy)
            m_img = Image.new("L", (size, size))
            outline = rng.random() < 0.25 * difficulty
            ImageDraw.Draw(m_img).polygon([tuple(p) for p in pts], fill=None if outline else 255,
                                          outline=255, width=max(2, round(r / 6)) if outline else 1)
            box = m_img.getbbox()  # exact drawn extent, already clipped to the image
            mask = np.asarray(m_img) > 0
            if box is None or min(box[2] - box[0], box[3] - box[1]) < 3:
                continue
            if any((m & ~mask).sum() < (1 - MAX_COVERED) * a0 for m, a0 in zip(masks, areas)):
                continue
            bg = canvas[mask].mean(0)
            for _c in range(10):  # enough contrast to be visible, less with higher difficulty
                col = rng.uniform(0, 255, 3)
                if np.linalg.norm(col - bg) > 110 - 70 * difficulty:
                    break
            canvas[mask] = col
            masks = [m & ~mask for m in masks] + [mask]
            areas.append(int(mask.sum()))
            labels.append((cls, *box))
            break
    canvas += rng.normal(0, 2 + 14 * difficulty, canvas.shape)
    out = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))
    return out, labels


def generate_synthetic(out_dir, *, n_train: int = 400, n_val: int = 100, imgsz: int = 128,
                       seed: int = 0, difficulty: float = 0.5) -> Path:
    """Write the dataset under `out_dir` and return the path of its data.yaml.

    `difficulty` in [0, 1] scales background noise, clutter, outline-only shapes and how close an
    object's colour may be to its background. Image i of split s uses default_rng([seed, s, i]),
    so every file depends only on (seed, split, i, imgsz, difficulty).
    data.yaml is written last (atomically): it marks a complete dataset.
    """
    if not 0 <= difficulty <= 1:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    out = Path(out_dir)
    (out / "data.yaml").unlink(missing_ok=True)
    for split_index, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        img_dir, lab_dir = out / "images" / split, out / "labels" / split
        for d in (img_dir, lab_dir):  # stale files from a larger earlier run would leak in
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        for i in range(n):
            img, labels = render_image(np.random.default_rng([seed, split_index, i]), imgsz, difficulty)
            img.save(img_dir / f"{i:06d}.png", compress_level=1)  # fast; PIL's PNG bytes are deterministic
            lines = [f"{c} {(x0 + x1) / 2 / imgsz:.6f} {(y0 + y1) / 2 / imgsz:.6f} "
                     f"{(x1 - x0) / imgsz:.6f} {(y1 - y0) / imgsz:.6f}\n" for c, x0, y0, x1, y1 in labels]
            (lab_dir / f"{i:06d}.txt").write_text("".join(lines))
    data_yaml = out / "data.yaml"
    write_text(data_yaml, yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                                          "nc": len(NAMES), "names": list(NAMES)}, sort_keys=False))
    return data_yaml
