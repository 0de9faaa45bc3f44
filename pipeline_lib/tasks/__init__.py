"""Model families, discovered from this folder: every sub-package that defines `TASK` is one.

    get_task("detection")                       # the family's Task (imported on first use)
    loaded = load_model("results/pruned.pt")     # checkpoint → Task → network with its widths → imgsz
    loaded.model(loaded.task.example_input(loaded.imgsz))

A new family is a folder `pipeline_lib/tasks/<name>/` with `__init__.py` exposing `TASK` and a
`schema.yaml` with its config keys (see `base.py`); nothing else names it.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from torch import nn

from ..checkpoint import checkpoint_imgsz, load_checkpoint, load_weights
from ..errors import UserError
from .base import Batch, Criterion, ImageSize, Manifest, StatefulCriterion, Task, input_size

__all__ = ["Task", "Manifest", "Batch", "Criterion", "StatefulCriterion", "ImageSize", "input_size",
           "families", "get_task", "build_from_checkpoint", "LoadedModel", "load_model", "with_evaluator"]


@cache
def families() -> tuple[str, ...]:
    """The family names: sub-packages of this folder that carry a schema.yaml (no import needed)."""
    here = Path(__file__).parent
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(here)])
                        if m.ispkg and (here / m.name / "schema.yaml").is_file()))


@cache
def get_task(family: str) -> Task:
    if family not in families():
        raise UserError(f"task: unknown model family {family!r} (known: {', '.join(families())})")
    task = importlib.import_module(f"{__name__}.{family}").TASK
    assert task.family == family, f"{family}/__init__.py exposes the Task of {task.family!r}"
    return task


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


def with_evaluator(eval_cfg: dict, evaluator: str | os.PathLike | None) -> dict:
    """`evaluate`'s settings with the path of the family's evaluator, when it has one (Task.has_evaluator)."""
    return {**eval_cfg, "evaluator": str(evaluator)} if evaluator else eval_cfg
