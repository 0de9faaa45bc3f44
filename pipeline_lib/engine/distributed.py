"""Run a training function in N processes with torch.distributed (DDP), from inside a step.

    launch(worker, nprocs=2, backend="auto", stage="baseline", ...)   # worker(rank, world_size, **kw)

The step launches the processes itself, so multi-GPU training works the same under plain
Snakemake, SLURM (one job, N GPUs) or by hand. With nprocs=1 the worker runs in this process,
without a process group. Rank r uses GPU r of the visible ones (CUDA_VISIBLE_DEVICES applies);
on CPU the gloo backend runs N processes (tests, laptops). A UserError in any rank comes back as
the same one-line UserError here; other errors keep torch's traceback.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import UserError

__all__ = ["launch", "rank", "world_size", "is_main", "device_for_rank", "barrier"]


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def device_for_rank(device: torch.device) -> torch.device:
    """cuda → this rank's GPU; cpu stays cpu."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", rank() % torch.cuda.device_count())
    return device


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(index: int, fn: Callable[..., Any], nprocs: int, backend: str, port: int, errors, kwargs: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if backend == "nccl":
        torch.cuda.set_device(index % torch.cuda.device_count())
    dist.init_process_group(backend, rank=index, world_size=nprocs)
    try:
        fn(**kwargs)
    except UserError as error:
        errors.put(str(error))
        sys.exit(1)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], *, nprocs: int, backend: str = "auto", **kwargs: Any) -> Any:
    """`fn(**kwargs)` in `nprocs` DDP processes (spawned), or directly when nprocs == 1."""
    if nprocs == 1:
        return fn(**kwargs)
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_worker, args=(fn, nprocs, backend, _free_port(), errors, kwargs), nprocs=nprocs, join=True)
    except mp.ProcessExitedException:
        if not errors.empty():
            raise UserError(errors.get()) from None
        raise
    return None
