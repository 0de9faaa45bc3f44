"""Market-1501 crops for training and evaluation: load and augment (the layout: market.py).

    index = index_market(Path("data/Market-1501-v15.09.15"))   # market.py
    ds = ReIDDataset(index["splits"]["train"], size=(256, 128), augment={"fliplr": 0.5, "pad": 10, "erasing": 0.5})
    sample = ds[0]      # {"images": float (3, 256, 128), "labels", "pids", "camids", "query"}
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = ["DEFAULT_AUGMENT", "MEAN", "STD", "ReIDDataset"]

DEFAULT_AUGMENT = {"fliplr": 0.5, "pad": 10, "erasing": 0.5}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet statistics, as reid-strong-baseline


class ReIDDataset(Dataset):
    """Person crops at (h, w): plain resize for evaluation; flip, pad-and-crop and random erasing for training.

    Images are decoded and resized once into RAM before DataLoader workers fork (ReID crops are
    small). A sample depends only on (seed, epoch, index): each augmentation runs under its own
    reseeded RNG, so results do not depend on the worker count. The engine calls set_epoch.
    """

    def __init__(self, items: list[dict], size: tuple[int, int], augment: dict | None = None, seed: int = 0):
        self.items, self.size, self.seed, self.epoch = items, tuple(size), seed, 0
        self.cache = [self._read(it["image"]) for it in items]
        self.augment = None if augment is None else {**DEFAULT_AUGMENT, **augment}
        if self.augment is not None:
            a = self.augment
            self.transform = v2.Compose([
                v2.RandomHorizontalFlip(a["fliplr"]),
                v2.Pad(a["pad"]),
                v2.RandomCrop(self.size),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(MEAN, STD),
                # Erasing after normalisation with value 0 fills with the mean colour (Zhong et al.'s setting).
                v2.RandomErasing(a["erasing"], scale=(0.02, 0.4), ratio=(0.3, 3.33), value=0),
            ])

    def _read(self, path: str) -> torch.Tensor:
        with Image.open(path) as im:
            image = F.pil_to_tensor(im.convert("RGB"))  # uint8 (3, H, W)
        return F.resize(image, list(self.size), antialias=True)

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        image, item = self.cache[i], self.items[i]
        if self.augment is None:
            image = F.normalize(F.to_dtype(image, torch.float32, scale=True), MEAN, STD)
        else:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image = self.transform(image)
        return {"images": image, "labels": item.get("label", -1), "pids": item["pid"], "camids": item["camid"],
                "query": item.get("query", False), "index": i}
