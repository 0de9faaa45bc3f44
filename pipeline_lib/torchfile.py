"""Torch files of plain containers that carry a checksum of their contents.

    save_sealed("results/work/baseline/last.pt", {"epoch": 3, "model": model.state_dict()})
    state = load_sealed("results/work/baseline/last.pt", remedy="delete it to start this stage over")

`torch.load` has no integrity check: random bytes inside a tensor's record load without
complaint and give a model that silently predicts nothing. So every file slimflow writes with
torch (published checkpoints and the resume state) stores `checksum`: the sha256 of everything
else in it — each tensor's dtype, shape and bytes, and every other value — recomputed and
compared on every load. A file written before checksums existed loads unverified (logged once).

Loading is `torch.load(weights_only=True)` on the CPU, or slimflow's restricted unpickler
(`torchpickle`) for a pickle protocol torch's cannot read, within a memory budget
(`torchlimits`): a file cannot run code nor exhaust memory, and every failure (missing,
truncated, damaged, too large, a pickle that would run code, an OS error) is one UserError line
naming the file and what to do.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .io import atomic_path, os_error
from .torchlimits import TooLarge, check_archive, check_tensors, memory_budget
from .torchpickle import Refused, read_torch_pickle

__all__ = ["CHECKSUM_KEY", "content_digest", "save_sealed", "load_plain", "load_sealed"]

log = logging.getLogger("slimflow")

CHECKSUM_KEY = "checksum"
_ALGORITHM = "sha256"


def _feed(h: "hashlib._Hash", node: Any) -> None:
    """Hash `node` in a canonical walk: containers by their items in stored order (pickle keeps
    dict order), tensors by dtype, shape and raw bytes, other values by type and repr."""
    if isinstance(node, torch.Tensor):
        t = node.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # (nbytes,) uint8: the tensor's bytes
    elif isinstance(node, dict):
        h.update(f"D{len(node)}".encode())
        for key, value in node.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(node, (list, tuple)):
        h.update(f"{'L' if isinstance(node, list) else 'U'}{len(node)}".encode())
        for value in node:
            _feed(h, value)
    else:
        h.update(f"V{type(node).__name__}:{node!r};".encode())


def content_digest(obj: dict) -> str:
    """`sha256:<hex>` of everything in `obj` except its checksum entry."""
    h = hashlib.new(_ALGORITHM)
    _feed(h, {k: v for k, v in obj.items() if k != CHECKSUM_KEY})
    return f"{_ALGORITHM}:{h.hexdigest()}"


def save_sealed(path: str | os.PathLike, obj: dict) -> None:
    """Atomically write `obj` (plain containers and tensors) with its checksum."""
    sealed = {**{k: v for k, v in obj.items() if k != CHECKSUM_KEY}, CHECKSUM_KEY: content_digest(obj)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(sealed, f)  # into a file object: a full disk surfaces as the OSError from write()


def _restricted_read(path: Path, remedy: str) -> Any:
    """What torch's weights_only unpickler refused, read by slimflow's restricted one, which also
    reads pickle protocols 3 to 5 (torch's reads 2 only: "Unsupported operand 149") and names the
    global a code-running pickle calls, whatever its opcode (GLOBAL, STACK_GLOBAL, INST)."""
    try:
        return read_torch_pickle(path, record_prefixes=None)
    except Refused as e:
        raise UserError(f"{path}: not a loadable checkpoint: contains pickled objects that could run code "
                        f"({e.name}); slimflow loads plain tensors only (nothing in it ran)") from None
    except TooLarge:
        raise
    except UserError:
        raise UserError(f"{path}: not a loadable checkpoint: truncated or corrupted; {remedy}") from None


def load_plain(path: str | os.PathLike, remedy: str = "delete it and rerun the step that writes it") -> Any:
    """A torch file of plain containers and tensors, read without running code and within its memory
    budget (`torchlimits`); every failure is one UserError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found")
    budget = memory_budget(path)
    try:
        if zipfile.is_zipfile(path):  # before torch inflates a member
            check_archive(path, budget)
        with warnings.catch_warnings():  # torch warns of a protocol it may not read; the fallback reads it
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise os_error(path, e, "cannot read") from None
    except UserError:
        raise
    except Exception:
        obj = _restricted_read(path, remedy)
    check_tensors(path, obj, budget)
    return obj


def load_sealed(path: str | os.PathLike, remedy: str = "delete it and rerun the step that writes it") -> Any:
    """Load a torch file with weights_only=True and verify its checksum; UserError on any damage."""
    path = Path(path)
    obj = load_plain(path, remedy)
    if isinstance(obj, dict) and CHECKSUM_KEY in obj:
        recorded = obj[CHECKSUM_KEY]
        if not isinstance(recorded, str) or content_digest(obj) != recorded:
            raise UserError(f"{path}: corrupted: its contents do not match the checksum stored in it "
                            f"(damaged on disk or edited); {remedy}")
        del obj[CHECKSUM_KEY]
    elif isinstance(obj, dict):
        log.info("%s: written without a checksum (an older slimflow); loaded unverified", path)
    return obj
