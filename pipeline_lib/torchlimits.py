"""How much memory a torch file may take once read, checked before anything is allocated.

    budget = memory_budget("best.pt")        # 2 × the file's size + 256 MiB, or $SLIMFLOW_WEIGHTS_BUDGET_MB
    check_archive("best.pt", budget)          # the zip headers' unpacked sizes fit it
    check_tensors("best.pt", obj, budget)     # the tensors torch.load built (views included) fit it

A torch.save file is a zip archive: a member may be compressed (1 MB on disk, 1 GiB unpacked),
and a tensor is a view of a storage, so one stored element can be declared as a 30000×30000
tensor with stride 0 — harmless as a view, 3.6 GB once copied (hashed, cast, cloned). The
budget's default covers every honest file: its storages are at most its size, and copies of
its tensors at most that again.
"""
from __future__ import annotations

import os
import zipfile
from typing import Any

from .errors import UserError

__all__ = ["TooLarge", "OVER_BUDGET", "memory_budget", "check_archive", "check_tensors", "gigabytes"]

BUDGET_FILE_MULTIPLE, BUDGET_EXTRA_BYTES = 2, 256 << 20
BUDGET_VARIABLE = "SLIMFLOW_WEIGHTS_BUDGET_MB"
MAX_ENTRIES = 1_000_000  # values in a file's containers, counted as a walk meets them (a checkpoint holds thousands)
OVER_BUDGET = ("more than the {budget} this file may take in memory (twice its size + 256 MiB; "
               f"{BUDGET_VARIABLE} raises it for a file you trust); refused before anything that size was allocated")


class TooLarge(UserError):
    """The file declares more than its archive holds or its memory budget allows."""


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def memory_budget(path: str | os.PathLike) -> int:
    """Bytes the file at `path` may take once read."""
    override = os.environ.get(BUDGET_VARIABLE, "").strip()
    if override:
        try:
            return int(float(override) * (1 << 20))
        except ValueError:
            raise UserError(f"{BUDGET_VARIABLE}={override!r}: not a number of MiB") from None
    return BUDGET_FILE_MULTIPLE * os.path.getsize(path) + BUDGET_EXTRA_BYTES


def check_archive(path: str | os.PathLike, budget: int) -> None:
    """The unpacked sizes in the zip headers of `path`, together, fit `budget` (TooLarge otherwise)."""
    with zipfile.ZipFile(path) as archive:
        total = 0
        for info in archive.infolist():
            total += info.file_size
            if total > budget:
                packed = "" if info.compress_type == zipfile.ZIP_STORED else f" from {info.compress_size} bytes"
                raise TooLarge(f"{path}: member {info.filename} unpacks to {gigabytes(info.file_size)}{packed}: "
                               + OVER_BUDGET.format(budget=gigabytes(budget)))


def _tensors(node: Any, where: str, visits: list[int]):
    import torch

    visits[0] += 1
    if visits[0] > MAX_ENTRIES:  # containers shared in a pickle multiply on every walk (hashing too)
        raise TooLarge(f"more than {MAX_ENTRIES:,} values in its containers (containers repeated inside each "
                       "other); refused before walking them all")
    if isinstance(node, torch.Tensor):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _tensors(value, f"{where}.{key}" if where else str(key), visits)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _tensors(value, f"{where}[{i}]", visits)


def check_tensors(path: str | os.PathLike, obj: Any, budget: int) -> None:
    """The tensors in `obj`, each copied out once (as hashing or casting does), fit `budget`, and
    the walk over its containers ends (MAX_ENTRIES)."""
    total = 0
    try:
        for name, tensor in _tensors(obj, "", [0]):
            nbytes = tensor.numel() * tensor.element_size()
            total += nbytes
            if total > budget:
                raise TooLarge(f"tensor {name} of shape {tuple(tensor.shape)} takes {gigabytes(nbytes)}, "
                               f"{gigabytes(total)} in all: " + OVER_BUDGET.format(budget=gigabytes(budget)))
    except TooLarge as e:
        raise TooLarge(f"{path}: {e.args[0]}") from None
