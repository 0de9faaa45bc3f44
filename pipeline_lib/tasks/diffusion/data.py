"""The diffusion family's data: an MNIST folder (or the embedded digits) validated once, then batches of digits.

    manifest = prepare({"path": "data/mnist", "synthetic": {}}, Path("results/data"), seed=0)
    batches = loader(manifest, "train", train=True, imgsz=28, batch_size=128, workers=2, seed=0)
    batch = next(iter(batches))   # {"images": float32 (128, 1, 28, 28) in [0, 1], "labels": int64 (128,)}

A dataset is a folder with MNIST's four IDX files (`idx.FILES`, plain or gzipped); the val split
is MNIST's test set. Without `dataset.path` the embedded generator writes the same files into
`out_dir/digits`. Images are white digits on black, as MNIST. No augmentation: a flipped or
turned digit can be another digit, and a diffusion model learns the data as it is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ...contracts import ImageSize, input_size
from ...engine.utils import make_loader
from ...errors import UserError
from ...fingerprint import dataset_file_sha256
from .idx import FILES, NAMES, find_split_files, read_idx, read_split
from .synthetic import generate_digits

__all__ = ["NAMES", "prepare", "DigitDataset", "loader"]


def _root(dataset_cfg: dict, out_dir: Path, seed: int) -> Path:
    """The user's folder, or the embedded digits generated into out_dir/digits."""
    if dataset_cfg.get("path") is not None:
        return Path(dataset_cfg["path"])
    syn = dataset_cfg["synthetic"]
    return generate_digits(Path(out_dir) / "digits", n_train=syn["n_train"], n_val=syn["n_val"], size=syn["imgsz"],
                           seed=seed, style=syn.get("style", "mixed"))


def prepare(dataset_cfg: dict, out_dir: Path, seed: int) -> dict:
    """Validate both splits (or generate them) and return the manifest (`Task.prepare_dataset`)."""
    root = _root(dataset_cfg, out_dir, seed)
    counts, checksums, splits = {}, {}, {}
    for split in FILES:
        images_path, labels_path = find_split_files(root, split)
        images, labels = read_split(root, split, len(NAMES))
        counts[split] = {"images": len(labels), "per_class": np.bincount(labels, minlength=len(NAMES)).tolist()}
        for path in (images_path, labels_path):
            checksums[path.name] = dataset_file_sha256(path)
        # Paths as given (relative ones stay relative, so a results folder can move); the root resolved for the log.
        splits[split] = [{"images": str(images_path), "labels": str(labels_path), "count": len(labels),
                          "size": list(images.shape[1:])}]
    return {"task": "diffusion", "root": str(root.resolve()), "names": list(NAMES), "counts": counts,
            "checksums": checksums, "splits": splits}


class DigitDataset(Dataset):
    """Digits of one IDX pair: {"images": float32 (1, h, w) in [0, 1], "labels": int64 scalar}.

    The uint8 images stay in memory (MNIST's train set is 47 MB); a file whose size differs from
    `imgsz` is resized per item with antialiasing.
    """

    def __init__(self, images_path: str | Path, labels_path: str | Path, imgsz: ImageSize):
        self.images = torch.from_numpy(read_idx(images_path, 3))
        self.labels = torch.from_numpy(read_idx(labels_path, 1).astype(np.int64))
        if len(self.images) != len(self.labels):
            raise UserError(f"{labels_path}: {len(self.labels)} labels but {images_path} holds {len(self.images)} "
                            "images; expected one label per image")
        self.size = input_size(imgsz)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        image = self.images[i].unsqueeze(0)  # uint8 (1, H, W)
        if tuple(image.shape[1:]) != self.size:  # resized as uint8: values stay in [0, 255]
            from torchvision.transforms.v2 import functional as F  # here: torchvision only for a file to resize

            image = F.resize(image, list(self.size), antialias=True)
        return {"images": image.float() / 255, "labels": self.labels[i]}


def loader(manifest: dict, split: str, *, train: bool, imgsz: ImageSize, batch_size: int, workers: int, seed: int,
           augment: dict | None = None) -> DataLoader:
    """Batches of `split`, shuffled per (seed, epoch) when `train`; `augment` is accepted and unused (see above)."""
    parts = [DigitDataset(item["images"], item["labels"], imgsz) for item in manifest["splits"][split]]
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    return make_loader(dataset, batch_size=batch_size, shuffle=train, workers=workers, seed=seed)
