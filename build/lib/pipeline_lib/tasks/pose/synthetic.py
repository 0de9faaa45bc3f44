"""Deterministic synthetic people with COCO keypoints, written as a COCO keypoints dataset.

    root = generate_coco_keypoints(Path("results/data/pose"), n_train=600, n_val=150, imgsz=128, seed=0)
    # root/annotations/person_keypoints_{train,val}.json, root/images/{train,val}/000001.jpg

Each image holds one to four articulated people over a cluttered background: a torso, a head
with a face (front view) or hair (back view), two-segment arms and legs of per-person thickness
and clothing colours, posed at random (lean, arm and leg swing, elbow and knee bends). A
person's left limbs are a shade darker than the right ones, so left and right can be told apart
from either side, as the clothing folds and faces of real people allow. Later people occlude
earlier ones, and so do foreground objects: a covered keypoint keeps its position with
visibility 1, one outside the image is unlabelled (0, 0, 0), as in COCO. `area` is the person's
visible pixel count (COCO's segmentation area, the OKS scale). `difficulty` in [0, 1] adds
clutter (including limb-like sticks), occluders, crowding, blur, noise and low contrast.

Image i of a split uses default_rng([seed, split, i]), so the files depend only on (seed, sizes,
difficulty): the same seed gives byte-identical images and JSON.
"""
from __future__ import annotations

import colorsys
import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["KEYPOINTS", "SKELETON", "generate_coco_keypoints", "render_image"]

KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
             "right_knee", "left_ankle", "right_ankle"]
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
            [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # COCO's, 1-based
SPLITS = ("train", "val")
COMPLETE = ".complete"  # written last: a folder without it is a half-written dataset
LEFT_SHADE = 0.55  # a person's left limbs are drawn this much darker
J = {name: i for i, name in enumerate(KEYPOINTS)}


def _colour(rng: np.random.Generator, sat=(0.3, 1.0), val=(0.25, 1.0)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))) * 255


def _rgb(colour: np.ndarray, shade: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(colour * shade, 0, 255))


def _unit(angle_deg: float) -> np.ndarray:
    """Direction at `angle_deg` from straight down, turning towards +x."""
    t = math.radians(angle_deg)
    return np.array([math.sin(t), math.cos(t)])


def _pose(rng: np.random.Generator, height: float, pelvis: np.ndarray, front: bool) -> tuple[np.ndarray, dict]:
    """Keypoints (17, 2) in image coordinates and the body's drawing sizes."""
    u = height  # body proportions are fractions of the standing height
    left = 1.0 if front else -1.0  # the person's left lies at +x when they face the camera
    lean = rng.normal(0, 8) if rng.random() < 0.8 else rng.uniform(-30, 30)
    up = -_unit(lean)  # from pelvis to neck
    side = np.array([-up[1], up[0]])  # across the body, towards +x when upright
    neck = pelvis + up * 0.3 * u
    kp = np.zeros((17, 2))
    shoulder_w, hip_w = rng.uniform(0.09, 0.12) * u, rng.uniform(0.06, 0.08) * u
    kp[J["left_shoulder"]] = neck + side * shoulder_w * left + up * -0.02 * u
    kp[J["right_shoulder"]] = neck - side * shoulder_w * left + up * -0.02 * u
    kp[J["left_hip"]] = pelvis + side * hip_w * left
    kp[J["right_hip"]] = pelvis - side * hip_w * left
    head_r = rng.uniform(0.055, 0.07) * u
    head = neck + (-_unit(lean + rng.normal(0, 10))) * (head_r + 0.04 * u)
    yaw = rng.uniform(-0.35, 0.35) * head_r if front else 0.0  # a turned face moves nose and eyes sideways
    kp[J["nose"]] = head + np.array([yaw, 0.25 * head_r])
    kp[J["left_eye"]] = head + np.array([yaw + 0.4 * head_r * left, -0.15 * head_r])
    kp[J["right_eye"]] = head + np.array([yaw - 0.4 * head_r * left, -0.15 * head_r])
    kp[J["left_ear"]] = head + np.array([0.92 * head_r * left, 0.0])
    kp[J["right_ear"]] = head + np.array([-0.92 * head_r * left, 0.0])
    for name, sgn in (("left", left), ("right", -left)):
        # arm: swing outwards from straight down, elbow bend either way
        shoulder = kp[J[f"{name}_shoulder"]]
        swing = rng.uniform(-25, 150) if rng.random() < 0.7 else rng.uniform(-25, 40)
        upper = _unit(lean + sgn * swing)
        bend = rng.uniform(-30, 150) * (1 if rng.random() < 0.5 else -1)
        kp[J[f"{name}_elbow"]] = shoulder + upper * rng.uniform(0.15, 0.18) * u
        kp[J[f"{name}_wrist"]] = kp[J[f"{name}_elbow"]] + _unit(lean + sgn * swing + bend) * rng.uniform(0.13, 0.16) * u
        # leg: spread and stride, knee bends backwards-ish in the image plane
        hip = kp[J[f"{name}_hip"]]
        spread = rng.normal(6, 12) if rng.random() < 0.85 else rng.uniform(-20, 70)
        knee_bend = rng.uniform(0, 70) * (1 if rng.random() < 0.5 else -1)
        kp[J[f"{name}_knee"]] = hip + _unit(sgn * spread) * rng.uniform(0.23, 0.26) * u
        kp[J[f"{name}_ankle"]] = kp[J[f"{name}_knee"]] + _unit(sgn * spread + knee_bend) * rng.uniform(0.22, 0.25) * u
    sizes = {"head": head, "head_r": head_r, "arm": rng.uniform(0.035, 0.06) * u, "leg": rng.uniform(0.05, 0.08) * u}
    return kp, sizes


def _draw_person(draws: list[ImageDraw.ImageDraw], fills: list, kp: np.ndarray, sizes: dict, front: bool,
                 colours: dict) -> None:
    """Draw one person on every (draw, fill) pair: the photo with colours, masks with a constant."""
    p = kp - 0.5  # continuous coordinates -> PIL's drawing coordinates (integers are pixel centres)

    def part(colour_key, shade=1.0):
        return [fill if fill is not None else _rgb(colours[colour_key], shade) for fill in fills]

    def limb(a, b, width, colour_key, shade):
        for draw, fill in zip(draws, part(colour_key, shade)):
            draw.line([tuple(p[a]), tuple(p[b])], fill=fill, width=max(1, round(width)))
            for q in (p[a], p[b]):  # round joints
                r = width / 2
                draw.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=fill)

    for name, shade in (("left", LEFT_SHADE), ("right", 1.0)):
        limb(J[f"{name}_hip"], J[f"{name}_knee"], sizes["leg"], "pants", shade)
        limb(J[f"{name}_knee"], J[f"{name}_ankle"], sizes["leg"] * 0.85, "shins", shade)
        a = p[J[f"{name}_ankle"]]
        for draw, fill in zip(draws, part("shoes", shade)):
            r = sizes["leg"] * 0.6
            draw.ellipse([a[0] - r, a[1] - r * 0.6, a[0] + r, a[1] + r * 0.6], fill=fill)
    torso = [tuple(p[J[k]]) for k in ("left_shoulder", "right_shoulder", "right_hip", "left_hip")]
    for draw, fill in zip(draws, part("shirt")):
        draw.polygon(torso, fill=fill)
    for name, shade in (("left", LEFT_SHADE), ("right", 1.0)):
        limb(J[f"{name}_shoulder"], J[f"{name}_elbow"], sizes["arm"], "sleeves", shade)
        limb(J[f"{name}_elbow"], J[f"{name}_wrist"], sizes["arm"] * 0.85, "skin", shade)
    h, r = sizes["head"] - 0.5, sizes["head_r"]
    for draw, fill in zip(draws, part("skin")):
        for ear in ("left_ear", "right_ear"):
            e = p[J[ear]]
            draw.ellipse([e[0] - 0.28 * r, e[1] - 0.4 * r, e[0] + 0.28 * r, e[1] + 0.4 * r], fill=fill)
        draw.ellipse([h[0] - 0.85 * r, h[1] - r, h[0] + 0.85 * r, h[1] + r], fill=fill)
    for draw, fill in zip(draws, part("hair")):
        if front:  # a hair cap over the forehead
            draw.chord([h[0] - 0.85 * r, h[1] - r, h[0] + 0.85 * r, h[1] + r], 190, 350, fill=fill)
        else:  # the back of the head
            draw.ellipse([h[0] - 0.8 * r, h[1] - r, h[0] + 0.8 * r, h[1] + 0.85 * r], fill=fill)
    if front:
        for draw, fill in zip(draws, part("eyes")):
            for eye in ("left_eye", "right_eye"):
                e = p[J[eye]]
                draw.ellipse([e[0] - 0.16 * r, e[1] - 0.12 * r, e[0] + 0.16 * r, e[1] + 0.12 * r], fill=fill)
        for draw, fill in zip(draws, part("skin", 0.75)):
            n = p[J["nose"]]
            draw.ellipse([n[0] - 0.14 * r, n[1] - 0.14 * r, n[0] + 0.14 * r, n[1] + 0.14 * r], fill=fill)


def _background(rng: np.random.Generator, size: int, difficulty: float) -> Image.Image:
    top, bottom = _colour(rng, sat=(0, 0.6), val=(0.2, 0.95)), _colour(rng, sat=(0, 0.6), val=(0.2, 0.95))
    ramp = np.linspace(0, 1, size)[:, None, None]
    img = Image.fromarray(np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.poisson(2 + 8 * difficulty))):  # furniture, signs, plants
        c, x, y = _rgb(_colour(rng, sat=(0, 0.8))), rng.uniform(-0.1, 1) * size, rng.uniform(-0.1, 1) * size
        w, h = rng.uniform(0.05, 0.4) * size, rng.uniform(0.05, 0.4) * size
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x, y, x + w, y + h], fill=c)
    for _ in range(int(rng.poisson(6 * difficulty))):  # sticks that look like limbs
        a = rng.uniform(0, size, 2)
        b = a + _unit(rng.uniform(0, 360)) * rng.uniform(0.1, 0.3) * size
        draw.line([tuple(a), tuple(b)], fill=_rgb(_colour(rng)), width=max(1, round(rng.uniform(0.02, 0.05) * size)))
    return img


def render_image(rng: np.random.Generator, size: int, difficulty: float) -> tuple[Image.Image, list[dict]]:
    """One photo and its people: [{"keypoints": (17, 3), "bbox": [x, y, w, h], "area": int}]."""
    img = _background(rng, size, difficulty)
    labels = Image.new("L", (size, size), 0)  # who owns each pixel: person index + 1, 255 = occluder
    draw, label_draw = ImageDraw.Draw(img), ImageDraw.Draw(labels)
    n_people = 1 + int(rng.binomial(3, 0.2 + 0.3 * difficulty))
    slots = (np.arange(n_people) + rng.uniform(0.2, 0.8, n_people)) / n_people  # spread out, overlapping a bit
    people = []
    for k in rng.permutation(n_people):
        height = size * rng.uniform(0.5, 0.92) * (1 - 0.15 * (n_people > 2))
        pelvis = np.array([slots[k] * size + rng.normal(0, 0.06 * size), rng.uniform(0.45, 0.62) * size])
        pelvis[1] += (height - 0.9 * size) * rng.uniform(-0.4, 0.1)
        front = bool(rng.random() < 0.6)
        kp, sizes = _pose(rng, height, pelvis, front)
        skin = np.array(colorsys.hsv_to_rgb(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.65), rng.uniform(0.3, 0.95))) * 255
        shirt, pants = _colour(rng), _colour(rng, sat=(0, 0.8), val=(0.1, 0.9))
        colours = {"skin": skin, "shirt": shirt, "pants": pants, "shins": skin if rng.random() < 0.25 else pants,
                   "sleeves": shirt if rng.random() < 0.6 else skin, "shoes": _colour(rng, sat=(0, 0.5), val=(0.05, 0.8)),
                   "hair": np.array(colorsys.hsv_to_rgb(rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.8),
                                                        rng.uniform(0.05, 0.7))) * 255,
                   "eyes": np.array([25.0, 20.0, 20.0])}
        if rng.random() < 0.5 * difficulty:  # low contrast: clothes close to the background behind them
            x, y = np.clip(pelvis.astype(int), 0, size - 1)
            colours["shirt"] = colours["pants"] = np.asarray(img.getpixel((int(x), int(y))), float) * rng.uniform(0.85, 1.15)
        mask = Image.new("L", (size, size), 0)
        _draw_person([draw, label_draw, ImageDraw.Draw(mask)], [None, len(people) + 1, 255], kp, sizes, front, colours)
        people.append({"kp": kp, "front": front, "mask": mask})
    for _ in range(int(rng.binomial(2, 0.35 * difficulty))):  # foreground objects covering people
        c, x, y = _rgb(_colour(rng, sat=(0, 0.7))), rng.uniform(0, 0.8) * size, rng.uniform(0.3, 0.9) * size
        box = [x, y, x + rng.uniform(0.1, 0.3) * size, y + rng.uniform(0.1, 0.5) * size]
        draw.rectangle(box, fill=c)
        label_draw.rectangle(box, fill=255)
    owner = np.asarray(labels)
    annotations = []
    for idx, person in enumerate(people):
        bbox = person["mask"].getbbox()
        area = int((owner == idx + 1).sum())
        if bbox is None or area == 0:
            continue
        keypoints = np.zeros((17, 3))
        for j, (x, y) in enumerate(person["kp"]):
            if not person["front"] and j in (J["nose"], J["left_eye"], J["right_eye"]):
                continue  # a face seen from behind is not annotated
            if not (0 <= x < size and 0 <= y < size):
                continue  # outside the image: unlabelled
            keypoints[j] = [x, y, 2 if owner[int(y), int(x)] == idx + 1 else 1]
        l, t, r, b = bbox
        annotations.append({"keypoints": keypoints, "bbox": [l, t, r - l, b - t], "area": area})
    return _photo(rng, img, difficulty), annotations


def _photo(rng: np.random.Generator, img: Image.Image, difficulty: float) -> Image.Image:
    """Blur, exposure and sensor noise."""
    if rng.random() < difficulty:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(img, dtype=np.float64) * rng.uniform(1 - 0.25 * difficulty, 1 + 0.25 * difficulty)
    arr += rng.normal(0, 2 + 10 * difficulty, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))


def generate_coco_keypoints(out_dir: Path, *, n_train: int = 600, n_val: int = 150, imgsz: int = 128,
                            seed: int = 0, difficulty: float = 0.3) -> Path:
    """Write the dataset under `out_dir` (a COCO-keypoints layout; see `coco.locate`) and return it."""
    if not 0 <= difficulty <= 1:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    out = Path(out_dir).resolve()
    (out / COMPLETE).unlink(missing_ok=True)
    for split in SPLITS:  # stale files from a larger earlier run would leak in
        shutil.rmtree(out / "images" / split, ignore_errors=True)
        (out / "images" / split).mkdir(parents=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": KEYPOINTS, "skeleton": SKELETON}
    for s, (split, n) in enumerate(zip(SPLITS, (n_train, n_val))):
        images, annotations = [], []
        for i in range(n):
            rng = np.random.default_rng([seed, s, i])
            img, people = render_image(rng, imgsz, difficulty)
            name = f"{i + 1:06d}.jpg"
            img.save(out / "images" / split / name, quality=92)
            images.append({"id": i + 1, "file_name": name, "width": imgsz, "height": imgsz})
            for person in people:
                kps = person["keypoints"]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                    "bbox": [float(v) for v in person["bbox"]], "area": float(person["area"]),
                    "num_keypoints": int((kps[:, 2] > 0).sum()),
                    "keypoints": [round(float(v), 2) if c < 2 else int(v) for row in kps for c, v in enumerate(row)]})
        (out / "annotations" / f"person_keypoints_{split}.json").write_text(
            json.dumps({"info": {"description": "slimflow synthetic people", "seed": seed, "difficulty": difficulty},
                        "images": images, "annotations": annotations, "categories": [category]}))
    (out / COMPLETE).write_text("")
    return out
