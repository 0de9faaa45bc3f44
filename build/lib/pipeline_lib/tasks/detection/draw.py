"""Detection's pictures: boxes with legible labels, for `predict` and the report's samples.

    draw_boxes(Path("val/000001.png"), [{"category_id": 0, "bbox": [x, y, w, h], "score": 0.9}], names, out)

A label is the class name and score on a filled box of the class colour, kept inside the image. An
image smaller than `MIN_SIDE` is drawn enlarged (nearest neighbour) so its labels can be read; when
many classes are drawn, the boxes carry their score only and a legend band below names the colours.
Ground truth (no "score") is drawn the same way, labelled by class name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["PALETTE", "MIN_SIDE", "LEGEND_FROM", "draw_boxes"]

PALETTE = [(255, 56, 56), (72, 249, 10), (0, 194, 255), (255, 157, 151), (146, 204, 23), (255, 178, 29),
           (52, 69, 147), (207, 210, 49), (132, 56, 255), (255, 149, 200)]
MIN_SIDE = 320  # px: smaller images are enlarged by a whole factor before drawing
LEGEND_FROM = 4  # classes in one image from which the colours get a legend


def _ink(colour) -> tuple[int, int, int]:
    """Black or white, whichever reads on `colour`."""
    return (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 150 else (255, 255, 255)


def _label(pen, font, text: str, box, colour, size) -> None:
    """`text` on a filled rectangle above the box's top-left corner, moved inside the image."""
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    x = min(max(box[0], 0), max(size[0] - w, 0))
    y = box[1] - h if box[1] - h >= 0 else min(max(box[1], 0), max(size[1] - h, 0))  # inside the box at the top
    pen.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
    pen.text((x + 2 - left, y + 2 - top), text, fill=_ink(colour), font=font)


def _legend(image: Image.Image, classes: list[int], names: Sequence[str], font) -> Image.Image:
    """The image with a white band below: a swatch and the name of each class drawn."""
    row = font.size + 8
    band = Image.new("RGB", (image.width, row * len(classes) + 4), "white")
    pen = ImageDraw.Draw(band)
    for k, c in enumerate(classes):
        y = 2 + k * row
        pen.rectangle([4, y + 2, 4 + font.size, y + 2 + font.size], fill=PALETTE[c % len(PALETTE)])
        pen.text((10 + font.size, y + 2), names[c] if c < len(names) else str(c), fill=(0, 0, 0), font=font)
    out = Image.new("RGB", (image.width, image.height + band.height), "white")
    out.paste(image, (0, 0))
    out.paste(band, (0, image.height))
    return out


def draw_boxes(image_path: Path, boxes: list[dict], names: Sequence[str], out_path: Path,
               min_score: float = 0.25) -> None:
    """Each box scoring at least `min_score` (every ground-truth box) with its label; see the module."""
    with Image.open(image_path) as im:
        image = im.convert("RGB")
    scale = max(1, -(-MIN_SIDE // max(image.size)))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image
    shown = [b for b in boxes if b.get("score", 1.0) >= min_score]
    classes = sorted({b["category_id"] for b in shown})
    many = len(classes) >= LEGEND_FROM
    font = ImageFont.load_default(size=max(14, round(max(image.size) / 28)))
    pen = ImageDraw.Draw(image)
    for b in sorted(shown, key=lambda b: b.get("score", 1.0)):  # the best on top
        x, y, w, h = (v * scale for v in b["bbox"])
        colour = PALETTE[b["category_id"] % len(PALETTE)]
        pen.rectangle([x, y, x + w, y + h], outline=colour, width=max(2, round(max(image.size) / 200)))
        name = names[b["category_id"]] if b["category_id"] < len(names) else str(b["category_id"])
        score = f"{b['score']:.2f}" if "score" in b else ""
        _label(pen, font, (score or name) if many else f"{name} {score}".strip(), (x, y), colour, image.size)
    (_legend(image, classes, names, font) if many else image).save(out_path)
