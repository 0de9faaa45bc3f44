"""Model families, discovered from this folder: every sub-package that defines `TASK` is one.

    get_task("detection")                       # the family's Task (imported on first use)
    loaded = load_model("results/pruned.pt")     # checkpoint → Task → network with its widths → imgsz
    loaded.model(loaded.task.example_input(loaded.imgsz))

A new family is a folder `pipeline_lib/tasks/<name>/` with `__init__.py` (its docstring and
light facts such as HAS_EVALUATOR), `task.py` exposing `TASK` (see `base.py`), a `schema.yaml`
with its config keys, and optionally `checks.py` with `check_config` / `check_dataset`; nothing
else names it (docs/FAMILIES.md).

Importing this package costs nothing: torch loads with the first Task or checkpoint. Config
validation (`pipeline_lib.config`) and the preflight run a family's `checks.py`, which imports
no torch, so a bad config or dataset is answered, and a valid run scheduled, without it.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import UserError

if TYPE_CHECKING:
    from .base import Task

__all__ = ["Task", "Manifest", "Batch", "Criterion", "StatefulCriterion", "ImageSize", "input_size",
           "families", "schema_path", "get_task", "family_check", "has_evaluator", "validation_keys",
           "validation_settings", "build_from_checkpoint",
           "LoadedModel", "load_model", "with_evaluator"]

# Names imported on first use (PEP 562): they need torch.
_LAZY = {**dict.fromkeys(("Task", "Manifest", "Batch", "Criterion", "StatefulCriterion", "ImageSize", "input_size"),
                         ".base"),
         **dict.fromkeys(("build_from_checkpoint", "LoadedModel", "load_model"), ".loading")}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    task = importlib.import_module(f"{__name__}.{family}.task").TASK
    assert task.family == family, f"{family}/task.py exposes the Task of {task.family!r}"
    return task


def has_evaluator(family: str) -> bool:
    """Whether the family scores stages with a model of its own (HAS_EVALUATOR in its package,
    read without importing its Task; see base.Task.train_evaluator)."""
    return bool(getattr(importlib.import_module(f"{__name__}.{family}"), "HAS_EVALUATOR", False))


def validation_keys(family: str) -> tuple[str, ...]:
    """The `evaluate` keys a family's per-epoch validation during training reads (VALIDATION_KEYS in
    its package, read without torch; none by default): training depends on them, and on no other
    `evaluate` key, so editing e.g. the final evaluation's batch size retrains nothing."""
    return tuple(getattr(importlib.import_module(f"{__name__}.{family}"), "VALIDATION_KEYS", ()))


def validation_settings(config: dict) -> dict:
    """The user's `evaluate` settings that training's validation reads (`validation_keys`)."""
    return {key: config["evaluate"][key] for key in validation_keys(config["task"])}


def family_check(family: str, name: str) -> Callable | None:
    """The function `name` ("check_config", "check_dataset") of the family's `checks.py`, or None
    when the family has no such check."""
    module = f"{__name__}.{family}.checks"
    try:
        checks = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None
    return getattr(checks, name, None)


def schema_path(family: str) -> Path:
    """The family's config keys (its schema.yaml), found without importing the family."""
    return Path(__file__).parent / family / "schema.yaml"


def with_evaluator(eval_cfg: dict, evaluator: str | os.PathLike | None) -> dict:
    """`evaluate`'s settings with the path of the family's evaluator, when it has one (`has_evaluator`)."""
    return {**eval_cfg, "evaluator": str(evaluator)} if evaluator else eval_cfg
