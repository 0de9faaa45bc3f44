"""Torch files of plain containers that carry a checksum of their contents.

    save_sealed("results/work/baseline/last.pt", {"epoch": 3, "model": model.state_dict()})
    state = load_sealed("results/work/baseline/last.pt", remedy="delete it to start this stage over")

`torch.load` has no integrity check: random bytes inside a tensor's record load without
complaint and give a model that silently predicts nothing. So every file slimflow writes with
torch (published checkpoints and the resume state) stores `checksum`: the sha256 of everything
else in it — each tensor's dtype, shape and bytes, and every other value — recomputed and
compared on every load. A file written before checksums existed loads unverified (logged once).

Loading is `torch.load(weights_only=True)` on the CPU: a file cannot run code, and every failure
(missing, truncated, damaged, a pickle that would run code, an OS error) is one UserError line
naming the file and what to do.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .io import atomic_path, os_error

__all__ = ["CHECKSUM_KEY", "content_digest", "save_sealed", "load_sealed"]

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


def _refused_global(error: Exception) -> str | None:
    """What weights_only refused — a global, class or call the pickle would make (code it would
    run) — as torch names it ("posix.system", or "" when it names none); None for damage.

    torch words it "Unsupported global: GLOBAL builtins.print ...", "unsupported GLOBAL ...",
    "Trying to load unsupported GLOBAL posix.system whose module posix is blocked" (2.14, without
    the "WeightsUnpickler error:" line), "Unsupported class ..." or "... reduce ..." depending on
    the version and the opcode. Its advice mentions globals for every failure, damaged files
    included ("Unsupported operand 93 ... add_safe_globals"), so that advice is not read.
    """
    if not isinstance(error, pickle.UnpicklingError):
        return None
    text, marker = str(error), "weightsunpickler error:"
    if marker in text.lower():  # torch's own line for the cause
        lines = [text[text.lower().index(marker) + len(marker):].strip().split("\n", 1)[0]]
    else:  # without it, every line but torch's advice (printed for damage too)
        lines = [line for line in text.splitlines() if not any(
            word in line.lower() for word in ("safe_globals", "documentation", "weights only load failed"))]
    for line in lines:
        low = line.lower()
        if any(word in low for word in ("global", "class", "reduce", "build", "blocked")):
            named = re.search(r"(?:global|class)[: ]+(?:global )?([\w.]+)", line, re.IGNORECASE)
            return named.group(1) if named else ""
    return None


def _is_code_pickle(error: Exception) -> bool:
    """weights_only refused a global, class or call the pickle would make (`_refused_global`)."""
    return _refused_global(error) is not None


def load_sealed(path: str | os.PathLike, remedy: str = "delete it and rerun the step that writes it") -> Any:
    """Load a torch file with weights_only=True and verify its checksum; UserError on any damage."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise os_error(path, e, "cannot read") from None
    except Exception as e:
        if (named := _refused_global(e)) is not None:
            why = (f"contains pickled objects that could run code{f' ({named})' if named else ''}; "
                   "slimflow loads plain tensors only (nothing in it ran)")
        else:
            why = f"truncated or corrupted ({type(e).__name__}); {remedy}"
        raise UserError(f"{path}: not a loadable checkpoint: {why}") from None
    if isinstance(obj, dict) and CHECKSUM_KEY in obj:
        recorded = obj[CHECKSUM_KEY]
        if not isinstance(recorded, str) or content_digest(obj) != recorded:
            raise UserError(f"{path}: corrupted: its contents do not match the checksum stored in it "
                            f"(damaged on disk or edited); {remedy}")
        del obj[CHECKSUM_KEY]
    elif isinstance(obj, dict):
        log.info("%s: written without a checksum (an older slimflow); loaded unverified", path)
    return obj
