"""Seeding, devices and data loaders: the pieces every stage and family shares.

    seed_everything(0); device = select_device("auto")
    loader = make_loader(dataset, batch_size=16, shuffle=True, workers=2, seed=0, collate_fn=collate)
"""
from __future__ import annotations

import os
import random
import resource
import sys
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import UserError

__all__ = ["seed_everything", "select_device", "make_loader", "rng_state", "set_rng_state", "to_device", "amp_dtype",
           "peak_memory_mb"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(spec: str = "auto") -> torch.device:
    """`auto` → the first visible CUDA device when present (CUDA_VISIBLE_DEVICES applies), else CPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(spec)
    if device.type == "cuda":  # checked where the step runs: a cluster node may have the GPU the login node lacks
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise UserError(f"device: {spec}, but this machine has {count or 'no'} usable CUDA device"
                            f"{'s' if count != 1 else ''} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
                            "set device: auto or cpu, or run where a GPU is visible")
    return device


def _seed_worker(worker_id: int) -> None:
    # Each worker's torch seed is derived from the loader's generator; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, workers: int, seed: int,
                collate_fn: Callable | None = None, drop_last: bool = False) -> DataLoader:
    """A loader whose order depends only on (seed, epoch): the engine calls sampler.set_epoch.

    DistributedSampler with one replica is a seeded per-epoch shuffle, so the single-process and
    DDP paths share one sampler (and one notion of "epoch order"). Under DDP, shuffled (training)
    loaders give each rank its shard; evaluation loaders stay whole, since rank 0 evaluates alone.
    """
    shard = shuffle and dist.is_initialized()
    sampler = DistributedSampler(dataset, num_replicas=dist.get_world_size() if shard else 1,
                                 rank=dist.get_rank() if shard else 0, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_fn, drop_last=drop_last, worker_init_fn=_seed_worker,
                      generator=generator, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)


def rng_state() -> dict[str, Any]:
    """Global RNG states as plain containers and tensors (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}


def set_rng_state(state: dict[str, Any]) -> None:
    kind, keys, pos, has_gauss, cached = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) dict/list batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA memory allocated by torch on a GPU, the resident
    set size on the CPU (DataLoader worker processes not included)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def amp_dtype(setting: bool | str, device: torch.device) -> torch.dtype | None:
    """`train.amp`: the autocast dtype, None for full precision. "auto" is CUDA only; true is also
    bf16 on the CPU (no GradScaler), which is how the CPU tests check AMP's dtypes. On CUDA bf16
    where the GPU has it, else fp16 with a GradScaler."""
    if setting is False or (setting == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" else None
