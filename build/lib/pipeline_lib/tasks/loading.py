"""Load a checkpoint of any family: its Task, its network at the saved widths, its input size.

    loaded = load_model("results/pruned.pt")     # LoadedModel(ckpt, task, model, imgsz)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

from ..checkpoint import checkpoint_imgsz, load_checkpoint, load_weights
from ..contracts import ImageSize
from ..errors import UserError
from ..slimming.plan import drop_blocks
from . import families, get_task
from .base import Task

__all__ = ["build_from_checkpoint", "LoadedModel", "load_model"]


def build_from_checkpoint(ckpt: dict, source: str | os.PathLike = "checkpoint") -> nn.Module:
    """The network a checkpoint describes: its family's nominal architecture resized to the saved
    widths. An unknown family, an arch that does not build, or weights that do not fit it are one
    UserError naming `source` (the file)."""
    arch = ckpt["arch"]
    if arch["family"] not in families():
        raise UserError(f"{source}: checkpoint is a {arch['family']!r} model; slimflow builds {', '.join(families())}")
    task = get_task(arch["family"])
    try:
        model = task.build_model(arch)
    except (TypeError, ValueError, KeyError) as e:
        raise UserError(f"{source}: its arch {arch['name']!r} {arch['kwargs']} does not build a model "
                        f"({type(e).__name__}: {e})") from None
    drop_blocks(model, arch.get("dropped", []))  # residual blocks the pruner replaced by the identity
    return load_weights(model, ckpt["state_dict"], task.keep_width_modules(model), source)


@dataclass
class LoadedModel:
    ckpt: dict  # the checkpoint as loaded (arch, state_dict, meta)
    task: Task
    model: nn.Module  # in eval mode, on the CPU
    imgsz: ImageSize  # the input size it was trained and is evaluated at


def load_model(path: str | os.PathLike, family: str | None = None) -> LoadedModel:
    """Load a checkpoint (expecting `family` when given) and rebuild its network; UserError naming the file."""
    ckpt = load_checkpoint(path, family=family)
    imgsz = checkpoint_imgsz(path, ckpt)
    return LoadedModel(ckpt, get_task(ckpt["arch"]["family"]), build_from_checkpoint(ckpt, path).eval(), imgsz)
