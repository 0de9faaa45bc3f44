"""The embedded dataset: MNIST-like handwritten-style digits rendered from matplotlib's fonts, written as IDX files.

    root = generate_digits(Path("results/data/digits"), n_train=6000, n_val=1000, size=28, seed=0)
    images, labels = read_split(root, "train")    # uint8 (6000, 28, 28), uint8 (6000,)

Each image is one digit in a random font of the style (`STYLES`), thickened (PIL's stroke)
towards a random pen width, rotated and sheared, bent by an elastic distortion (Simard et al.
2003: a Gaussian-smoothed random displacement field), then normalised as MNIST was: the digit's
bounding box scaled to about 20/28 of the frame (aspect kept, size jittered by `SCALE`),
downsampled with antialiasing and centred by its centre of mass (which is why no random
translation is drawn: the centring would undo it). White on black, uint8. The drawing and the
warp happen at `RENDER`x the final resolution.

Labels are balanced (image i shows i % 10 before a seeded shuffle). Image i of a split is drawn
from `default_rng([seed, split_id, i])`, so an image depends only on (seed, split, i, size,
style): the same seed gives byte-identical files, and train and val come from disjoint streams.
"""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ...errors import UserError
from .idx import FILES, write_idx

__all__ = ["STYLES", "generate_digits", "render_digit"]

_SANS = ["DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique", "DejaVuSansMono",
         "DejaVuSansMono-Bold"]
_SERIF = ["DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic", "STIXGeneral",
          "STIXGeneralBol", "STIXGeneralItalic", "cmr10"]
STYLES = {"sans": _SANS, "serif": _SERIF, "mixed": _SANS + _SERIF}
_MARKED_ZERO = {"DejaVuSansMono", "DejaVuSansMono-Bold"}  # their 0 has a dot inside, which no handwritten 0 has
SPLIT_IDS = {"train": 0, "val": 1}  # the generator stream of each split

RENDER = 3  # render at 3x the final resolution, then downsample with antialiasing
BOX = 20 / 28  # MNIST: the digit's bounding box fits 20x20 px of the 28x28 frame
# Random distortions, in pixels of a 28 px frame where they are lengths.
ROTATION = 15.0  # degrees, either way
SHEAR = 0.2  # horizontal shear x += shear * y, either way
SCALE = (0.75, 1.05)  # of the 20/28 box: digits vary in size around MNIST's
PEN = (2.5, 3.8)  # the pen width a glyph is thickened to (PIL's stroke_width), when its strokes are thinner
STROKE_MAX = 1.0  # the most a glyph is thickened on each side
ELASTIC_ALPHA = (1.5, 2.5)  # largest displacement of the elastic field
ELASTIC_SIGMA = 3.0  # smoothing of the field: the length over which it bends the strokes


@functools.lru_cache(maxsize=64)
def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf"
    try:
        return ImageFont.truetype(str(path), px)
    except OSError:
        raise UserError(f"{path}: font not found or unreadable; the embedded digits are rendered from "
                        "matplotlib's bundled fonts (reinstall matplotlib)") from None


def _elastic_field(rng: np.random.Generator, side: int, unit: float) -> torch.Tensor:
    """A smooth random displacement (2, side, side) in render pixels whose largest vector is alpha * unit.

    The noise is drawn and smoothed on a grid of 28-px-frame pixels (cheap at any render size)
    and upsampled bilinearly: the field is smooth, so nothing is lost.
    """
    coarse = max(4, round(side / unit))
    field = ndimage.gaussian_filter(rng.standard_normal((2, coarse, coarse)), sigma=(0, ELASTIC_SIGMA, ELASTIC_SIGMA),
                                    mode="reflect")
    field *= rng.uniform(*ELASTIC_ALPHA) * unit / max(float(np.sqrt((field ** 2).sum(0)).max()), 1e-12)
    return nnf.interpolate(torch.from_numpy(field.astype(np.float32))[None], size=(side, side), mode="bilinear",
                           align_corners=False)[0]


@functools.lru_cache(maxsize=8)
def _centred_grid(side: int) -> torch.Tensor:
    """(2, side, side): each pixel's (y, x) relative to the canvas centre."""
    c = (side - 1) / 2
    return torch.stack(torch.meshgrid(torch.arange(side) - c, torch.arange(side) - c, indexing="ij")).float()


def _pen_width(glyph: np.ndarray) -> float:
    """The mean stroke width of a rendered glyph: 2 x area / boundary length (a stroke of width w and
    length L covers w L pixels and has about 2 L boundary pixels)."""
    mask = glyph > 127
    boundary = np.count_nonzero(mask & ~ndimage.binary_erosion(mask))
    return 2 * np.count_nonzero(mask) / max(boundary, 1)


def _draw(digit: int, font: ImageFont.FreeTypeFont, side: int, stroke: int) -> np.ndarray:
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text((side / 2, side / 2), str(digit), fill=255, font=font, anchor="mm",
                                stroke_width=stroke, stroke_fill=255)
    return np.asarray(canvas, dtype=np.float32)


def render_digit(digit: int, rng: np.random.Generator, size: int = 28, style: str = "mixed") -> np.ndarray:
    """One digit, uint8 (size, size), white on black, drawn with `rng` (see the module doc)."""
    unit = RENDER * size / 28  # render pixels per pixel of a 28 px frame
    fonts = [f for f in STYLES[style] if not (digit == 0 and f in _MARKED_ZERO)]
    font = _font(fonts[rng.integers(len(fonts))], round(unit * 28))  # a digit about 20 px (of 28) tall
    side = round(unit * 40)  # room for the glyph turned and sheared
    src = _draw(digit, font, side, 0)
    # Thicken towards a random pen width (fonts' hairlines are thinner than any pen); bold stays bold.
    stroke = round(min((rng.uniform(*PEN) * unit - _pen_width(src)) / 2, STROKE_MAX * unit))
    if stroke > 0:
        src = _draw(digit, font, side, stroke)

    # Affine and elastic in one resampling: each output pixel reads the canvas at A^-1 (p - c) + c + d(p).
    theta, shear = np.deg2rad(rng.uniform(-ROTATION, ROTATION)), rng.uniform(-SHEAR, SHEAR)
    cos, sin = np.cos(theta), np.sin(theta)
    forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, 0.0], [shear, 1.0]])  # (y, x) rows
    inverse = np.linalg.inv(forward)
    # Pixel coordinates -> grid_sample's [-1, 1] (x first); bilinear reads, zeros outside the canvas.
    coords = torch.einsum("ij,jhw->ihw", torch.from_numpy(inverse).float(), _centred_grid(side))
    coords = (coords + _elastic_field(rng, side, unit)) / ((side - 1) / 2)
    warped = nnf.grid_sample(torch.from_numpy(src)[None, None], coords.flip(0).permute(1, 2, 0)[None],
                             mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0].numpy()

    # MNIST's normalisation: the bounding box scaled into the 20 px box (aspect kept), then centred by mass.
    rows, cols = np.flatnonzero(warped.max(1) > 32), np.flatnonzero(warped.max(0) > 32)
    crop = warped[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = BOX * size * rng.uniform(*SCALE)
    k = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * k)), max(1, round(crop.shape[1] * k))
    # PIL widens the bilinear filter when reducing: an antialiased downsample, without Lanczos's ringing.
    small = np.asarray(Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR),
                       dtype=np.uint8)
    cy, cx = ndimage.center_of_mass(small.astype(np.float32))
    # Centre of mass on the frame's centre, kept inside the frame when the mass sits far off the box's middle.
    top = int(np.clip(round((size - 1) / 2 - cy), 0, size - h))
    left = int(np.clip(round((size - 1) / 2 - cx), 0, size - w))
    out = np.zeros((size, size), np.uint8)
    out[top:top + h, left:left + w] = small
    return out


def _render_split(n: int, seed: int, split: str, size: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    split_id = SPLIT_IDS[split]
    labels = (np.arange(n) % 10).astype(np.uint8)
    np.random.default_rng([seed, 2 + split_id, n]).shuffle(labels)  # a stream of its own, apart from the images'
    images = np.stack([render_digit(int(d), np.random.default_rng([seed, split_id, i]), size, style)
                       for i, d in enumerate(labels)])
    return images, labels


def generate_digits(out_dir: Path, *, n_train: int, n_val: int, size: int = 28, seed: int = 0,
                    style: str = "mixed") -> Path:
    """Write the four MNIST IDX files (plain, MNIST's names: `idx.FILES`) into `out_dir` and return it."""
    if style not in STYLES:
        raise UserError(f"dataset.synthetic.style: {style!r} is not a digit style (use {', '.join(STYLES)})")
    out_dir = Path(out_dir)
    for split, n in (("train", n_train), ("val", n_val)):
        images, labels = _render_split(n, seed, split, size, style)
        images_name, labels_name = FILES[split]
        write_idx(out_dir / images_name, images)
        write_idx(out_dir / labels_name, labels)
    return out_dir
