"""Deterministic synthetic pedestrians written in the Market-1501 folder layout.

    root = generate_market(Path("results/data/market"), n_train_ids=120, n_test_ids=100, height=128, seed=0)
    # root/bounding_box_train/0001_c1s1_000012_01.jpg, root/query/..., root/bounding_box_test/...

Each identity is a fixed set of attributes (clothing colours and patterns, hair, hat, bag, build)
seen by 2-4 of six cameras. A camera has its own scene and colour cast; every image varies
viewpoint (front/back/side, which hides or shows a pattern or a bag), gait, scale, position,
occlusion and noise. `difficulty` in [0, 1] scales colour jitter, casts, occlusion and noise.

Market-1501 conventions kept: names `PPPP_cCsS_FFFFFF_NN.jpg`; one query per identity and camera,
the rest of the test identities' images in the gallery; distractors (`0000`) and junk (`-1`)
in the gallery only. Identity i uses default_rng([seed, 0, i]), so files depend only on
(seed, sizes, difficulty) and the same seed gives byte-identical files.
"""
from __future__ import annotations

import colorsys
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["CAMERAS", "generate_market", "render_person"]

CAMERAS = 6
SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
COMPLETE = ".complete"  # marker written last: a folder without it is a half-written dataset


def _colour(rng: np.random.Generator, sat=(0.35, 1.0), val=(0.25, 1.0)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))) * 255


@dataclass
class Identity:
    upper: np.ndarray
    lower: np.ndarray
    accent: np.ndarray  # second colour of the upper-body pattern
    pattern: int  # 0 solid, 1 horizontal stripes, 2 left/right split, 3 chest patch (front only)
    sleeves: bool  # long sleeves (arms in the upper colour) or bare arms
    shorts: bool
    skin: np.ndarray
    hair: np.ndarray
    hat: np.ndarray | None
    bag: np.ndarray | None  # backpack: a block from behind, a strap from the front
    shoes: np.ndarray
    build: float  # body width factor
    stature: float  # body height factor


def _identity(rng: np.random.Generator) -> Identity:
    skin = np.array(colorsys.hsv_to_rgb(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.95))) * 255
    hair = np.array(colorsys.hsv_to_rgb(rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.8))) * 255
    return Identity(upper=_colour(rng), lower=_colour(rng, sat=(0.0, 0.8), val=(0.1, 0.9)), accent=_colour(rng),
                    pattern=int(rng.integers(4)), sleeves=bool(rng.random() < 0.6), shorts=bool(rng.random() < 0.25),
                    skin=skin, hair=hair, hat=_colour(rng) if rng.random() < 0.2 else None,
                    bag=_colour(rng) if rng.random() < 0.35 else None, shoes=_colour(rng, sat=(0, 0.5), val=(0.05, 0.9)),
                    build=float(rng.uniform(0.85, 1.15)), stature=float(rng.uniform(0.9, 1.0)))


@dataclass
class Camera:
    floor: np.ndarray
    wall: np.ndarray
    horizon: float  # fraction of the height where the floor starts
    stripes: int  # vertical wall stripes (0 = plain)
    cast: np.ndarray  # per-channel colour gain of the camera
    blur: float


def _camera(rng: np.random.Generator, difficulty: float) -> Camera:
    return Camera(floor=_colour(rng, sat=(0, 0.4), val=(0.2, 0.8)), wall=_colour(rng, sat=(0, 0.6), val=(0.2, 0.9)),
                  horizon=float(rng.uniform(0.4, 0.8)), stripes=int(rng.integers(0, 6)),
                  cast=1 + rng.uniform(-0.25, 0.25, 3) * difficulty, blur=float(rng.uniform(0, 0.8 * difficulty)))


def _background(rng: np.random.Generator, cam: Camera, h: int, w: int, difficulty: float) -> Image.Image:
    img = Image.new("RGB", (w, h), tuple(int(v) for v in cam.wall))
    draw = ImageDraw.Draw(img)
    y0 = int(cam.horizon * h + rng.uniform(-4, 4))
    draw.rectangle([0, y0, w, h], fill=tuple(int(v) for v in cam.floor))
    if cam.stripes:
        offset, period = rng.uniform(0, w), w / cam.stripes
        for k in range(cam.stripes + 1):
            x = (offset + k * period) % (w + period) - period / 2
            shade = tuple(int(v) for v in np.clip(cam.wall * 0.75, 0, 255))
            draw.rectangle([x, 0, x + period / 4, y0], fill=shade)
    for _ in range(rng.poisson(1 + 3 * difficulty)):  # clutter: poles, signs, parked things
        col = tuple(int(v) for v in _colour(rng, sat=(0, 0.7)))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        bw, bh = rng.uniform(2, w / 4), rng.uniform(4, h / 3)
        draw.rectangle([x, y, x + bw, y + bh], fill=col)
    return img


def _torso(draw: ImageDraw.ImageDraw, ident: Identity, jit, view: int, side: int, frame: tuple) -> tuple:
    """The torso, its pattern and a bag seen from the front or back; returns the upper garment's colour."""
    cx, bw, y_neck, y_hip, s = frame
    upper, accent = _c(ident.upper, jit()), _c(ident.accent, jit())
    torso = [cx - bw, y_neck, cx + bw, y_hip]
    draw.rectangle(torso, fill=upper)
    if ident.pattern == 1:
        for k in range(4):
            y = y_neck + (k + 0.5) * (y_hip - y_neck) / 4
            draw.rectangle([cx - bw, y, cx + bw, y + 3.5 * s], fill=accent)
    elif ident.pattern == 2:  # split: which half shows the accent flips with the view
        left = (view == 0) == (side > 0) if view == 2 else view == 0
        draw.rectangle([cx - bw, y_neck, cx, y_hip] if left else [cx, y_neck, cx + bw, y_hip], fill=accent)
    elif ident.pattern == 3 and view == 0:
        draw.rectangle([cx - bw * 0.5, y_neck + 6 * s, cx + bw * 0.5, y_neck + 20 * s], fill=accent)
    if ident.bag is not None and view == 1:
        draw.rectangle([cx - bw * 0.8, y_neck + 3 * s, cx + bw * 0.8, y_neck + 28 * s], fill=_c(ident.bag, jit()))
    elif ident.bag is not None and view == 0:
        draw.line([(cx - bw * 0.6, y_neck), (cx - bw * 0.6, y_neck + 24 * s)], fill=_c(ident.bag, jit()), width=max(1, round(2 * s)))
        draw.line([(cx + bw * 0.6, y_neck), (cx + bw * 0.6, y_neck + 24 * s)], fill=_c(ident.bag, jit()), width=max(1, round(2 * s)))
    return upper


def _c(colour: np.ndarray, jitter: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(colour * jitter, 0, 255))


def render_person(img: Image.Image, ident: Identity, rng: np.random.Generator, difficulty: float) -> Image.Image:
    """Draw `ident` on `img` in a random view, gait, scale and position (in place; returned)."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    jit = lambda: 1 + rng.uniform(-0.15, 0.15, 3) * (0.3 + difficulty)  # noqa: E731 - per-part colour drift
    view = int(rng.integers(3))  # 0 front, 1 back, 2 side
    height = h * rng.uniform(0.72, 0.95) * ident.stature
    cx = w / 2 + rng.uniform(-0.12, 0.12) * w
    top = h - height - rng.uniform(0, 0.04) * h
    s = height / 100  # drawing unit: the body is laid out on a 100-unit-tall frame
    bw = (11 if view == 2 else 16) * ident.build * s  # half torso width
    y_neck, y_hip, y_foot = top + 16 * s, top + 52 * s, top + 98 * s
    stride = rng.uniform(0, 12 if view == 2 else 5) * s
    side = 1 if rng.random() < 0.5 else -1  # walking direction in side view

    if ident.bag is not None and view == 2:  # backpack behind the torso
        x0, x1 = sorted((cx - side * (bw + 8 * s), cx - side * bw))
        draw.rectangle([x0, y_neck + 3 * s, x1, y_neck + 26 * s], fill=_c(ident.bag, jit()))
    # legs: two quads from the hips, spread by the stride
    lower, skin = _c(ident.lower, jit()), _c(ident.skin, jit())
    for sgn in (-1, 1):
        hip_x = cx + sgn * bw * 0.5
        foot_x = cx + sgn * (stride + 3 * s) if view != 2 else cx + sgn * stride
        knee_y = y_hip + 0.45 * (y_foot - y_hip)
        leg = [(hip_x - 5 * s, y_hip), (hip_x + 5 * s, y_hip), (foot_x + 4 * s, y_foot), (foot_x - 4 * s, y_foot)]
        draw.polygon(leg, fill=skin if ident.shorts else lower)
        if ident.shorts:
            draw.polygon([leg[0], leg[1], ((hip_x + foot_x) / 2 + 5 * s, knee_y), ((hip_x + foot_x) / 2 - 5 * s, knee_y)], fill=lower)
        draw.ellipse([foot_x - 6 * s, y_foot - 3 * s, foot_x + 6 * s, y_foot + 1 * s], fill=_c(ident.shoes, jit()))
    # torso and its pattern
    upper = _torso(draw, ident, jit, view, side, (cx, bw, y_neck, y_hip, s))
    # arms swing against the legs
    arm = upper if ident.sleeves else skin
    swing = rng.uniform(-6, 6) * s
    for sgn in ((-1, 1) if view != 2 else (side,)):
        x = cx + sgn * (bw + 3 * s) if view != 2 else cx + side * 2 * s
        draw.polygon([(x - 3 * s, y_neck + 2 * s), (x + 3 * s, y_neck + 2 * s), (x + 3 * s + swing * sgn, y_hip),
                      (x - 3 * s + swing * sgn, y_hip)], fill=arm)
    # head, hair, hat
    r = 8 * s
    hx, hy = cx + (side * 2 * s if view == 2 else 0), top + 8 * s
    draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=_c(ident.hair, jit()) if view == 1 else skin)
    if view != 1:
        draw.chord([hx - r, hy - r, hx + r, hy + r], 180, 360, fill=_c(ident.hair, jit()))
    if ident.hat is not None:
        draw.rectangle([hx - r, hy - r - 2 * s, hx + r, hy - r * 0.3], fill=_c(ident.hat, jit()))
    return img


def _photo(rng: np.random.Generator, cam: Camera, img: Image.Image, difficulty: float) -> Image.Image:
    """Occlusion, camera colour cast and blur, per-image exposure and sensor noise."""
    w, h = img.size
    if rng.random() < 0.3 * difficulty:  # a passer-by object covers a band of the person
        draw = ImageDraw.Draw(img)
        col = tuple(int(v) for v in _colour(rng, sat=(0, 0.6)))
        if rng.random() < 0.5:
            y = rng.uniform(0.55, 0.85) * h
            draw.rectangle([0, y, w, h], fill=col)
        else:
            x = rng.uniform(-0.1, 0.7) * w
            draw.rectangle([x, 0, x + rng.uniform(0.15, 0.35) * w, h], fill=col)
    if cam.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(cam.blur))
    arr = np.asarray(img, dtype=np.float64) * cam.cast * rng.uniform(1 - 0.3 * difficulty, 1 + 0.3 * difficulty)
    arr += rng.normal(0, 2 + 10 * difficulty, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))


def _image(rng, ident: Identity | None, cam: Camera, h: int, w: int, difficulty: float) -> Image.Image:
    img = _background(rng, cam, h, w, difficulty)
    if ident is not None:
        render_person(img, ident, rng, difficulty)
    return _photo(rng, cam, img, difficulty)


def generate_market(out_dir: Path, *, n_train_ids: int = 120, n_test_ids: int = 100, height: int = 128,
                    seed: int = 0, difficulty: float = 0.5, distractors: float = 0.1, junk: float = 0.03) -> Path:
    """Write a Market-1501-style dataset under `out_dir` and return it.

    Train identities are 0001.., test identities follow them. Each identity walks past 2-4
    cameras and is captured 2-4 times per camera; `distractors`/`junk` are gallery fractions of
    identity-less pedestrians (0000) and background crops (-1). Width is height // 2.
    """
    if not 0 <= difficulty <= 1:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    out = Path(out_dir).resolve()
    (out / COMPLETE).unlink(missing_ok=True)
    for d in SPLIT_DIRS:  # stale files from a larger earlier run would leak in
        shutil.rmtree(out / d, ignore_errors=True)
        (out / d).mkdir(parents=True)
    h, w = height, height // 2
    cam_rng = np.random.default_rng([seed, 1])
    cams = [_camera(cam_rng, difficulty) for _ in range(CAMERAS)]
    frame = 0
    gallery_count = 0

    def save(folder: str, pid: int, cam: int, rng, ident: Identity | None) -> None:
        nonlocal frame
        frame += int(rng.integers(1, 50))
        name = f"{pid:04d}" if pid >= 0 else "-1"
        seq = int(rng.integers(1, 7))
        _image(rng, ident, cams[cam - 1], h, w, difficulty).save(
            out / folder / f"{name}_c{cam}s{seq}_{frame:06d}_01.jpg", quality=90)

    for i in range(n_train_ids + n_test_ids):
        rng = np.random.default_rng([seed, 0, i])
        ident, pid, test = _identity(rng), i + 1, i >= n_train_ids
        for cam in sorted(rng.choice(CAMERAS, size=int(rng.integers(2, 5)), replace=False) + 1):
            shots = int(rng.integers(2, 5))
            for k in range(shots):
                folder = ("query" if k == 0 else "bounding_box_test") if test else "bounding_box_train"
                gallery_count += folder == "bounding_box_test"
                save(folder, pid, int(cam), rng, ident)
    rng = np.random.default_rng([seed, 2])
    for _ in range(round(distractors * gallery_count)):  # people who never appear as a query
        save("bounding_box_test", 0, int(rng.integers(1, CAMERAS + 1)), rng, _identity(rng))
    for _ in range(round(junk * gallery_count)):  # detector false alarms: background only
        save("bounding_box_test", -1, int(rng.integers(1, CAMERAS + 1)), rng, None)
    (out / COMPLETE).write_text("")
    return out
