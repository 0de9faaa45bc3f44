"""Real handwritten digits as MNIST's IDX files, for the diffusion family, from scikit-learn's bundled digits.

    pip install scikit-learn
    python benchmarks/digits_idx.py runs/uci-digits --imgsz 28
    # runs/uci-digits/{train,t10k}-{images-idx3,labels-idx1}-ubyte, and runs/uci-digits/dataset.yaml:
    snakemake results/data/evaluator.json --directory runs/judge-uci \
        --configfile config/diffusion.yaml runs/uci-digits/dataset.yaml

The 1,797 digits of UCI's optdigits test half that scikit-learn ships (`load_digits`, nothing is
downloaded; see benchmarks/digits_dataset.py), each an 8x8 grid of ink counts 0..16, laid out as
MNIST's are: white ink on black, the digit upscaled (bilinear) to 20/28 of the side and centred.
The val split ("t10k") is the last `--val-fraction` of the file's order, as in digits_dataset.py:
no val digit was seen in training. `dataset.yaml` is a config file naming the folder as
`dataset.path`, to lay over a diffusion config. Same arguments -> byte-identical files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from pipeline_lib.tasks.diffusion.idx import FILES, write_idx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_dataset import load_source_digits, split_sources  # noqa: E402  (the same source and split)

INK_SHARE = 20 / 28  # MNIST: each digit normalised into a 20x20 box of the 28x28 frame


def to_frame(digit: np.ndarray, imgsz: int) -> np.ndarray:
    """One 8x8 digit in [0, 1] as an imgsz x imgsz uint8 image, MNIST's way: white on black, centred."""
    side = max(8, round(imgsz * INK_SHARE))
    ink = np.asarray(Image.fromarray(digit.astype(np.float32)).resize((side, side), Image.BILINEAR))
    frame = np.zeros((imgsz, imgsz), np.float32)
    at = (imgsz - side) // 2
    frame[at:at + side, at:at + side] = ink
    return (frame.clip(0, 1) * 255).round().astype(np.uint8)


def build(out_dir: str | Path, *, imgsz: int = 28, val_fraction: float = 0.2) -> Path:
    """Write both splits' IDX files and dataset.yaml (last) under `out_dir`; return dataset.yaml."""
    images, labels = load_source_digits()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset.yaml").unlink(missing_ok=True)
    for split, index in zip(("train", "val"), split_sources(len(labels), val_fraction)):
        image_file, label_file = FILES[split]
        write_idx(out / image_file, np.stack([to_frame(images[i], imgsz) for i in index]))
        write_idx(out / label_file, labels[index].astype(np.uint8))
    config = out / "dataset.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"path": str(out)}, "model": {"imgsz": imgsz}}, sort_keys=False))
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the four IDX files and dataset.yaml into")
    parser.add_argument("--imgsz", type=int, default=28, help="square image side in pixels (MNIST: 28)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of the digits kept for val")
    args = parser.parse_args(argv)
    if args.imgsz < 16 or not 0 < args.val_fraction < 1:
        parser.error("need --imgsz >= 16 and 0 < --val-fraction < 1")
    print(build(args.out, imgsz=args.imgsz, val_fraction=args.val_fraction))


if __name__ == "__main__":
    sys.exit(main())
