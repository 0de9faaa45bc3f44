"""The model families, found by name: the seam through which the floors below `tasks/` reach one.

    families()                              # ("detection", "diffusion", "pose", "reid"): folders with a schema.yaml
    schema_path("reid")                     # pipeline_lib/tasks/reid/schema.yaml, read by config
    family_check("detection", "check_config")   # its checks.py's function, imported without torch
    get_task("detection")                   # the family's Task (tasks/detection/task.py, imported on first use)

Config validation, the chain and the weights import need a family before anything of the family
is imported, so this module sits on the ground floor (docs/ARCHITECTURE.md) and reaches the
families by module name through `importlib`, never by an import statement: `pipeline_lib.tasks`
re-exports it for callers above the families. Nothing here imports torch.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import UserError

if TYPE_CHECKING:
    from .tasks.base import Task

__all__ = ["families", "schema_path", "get_task", "family_check", "has_evaluator", "validation_keys",
           "validation_settings"]

_TASKS = Path(__file__).parent / "tasks"  # the families' folder
_PACKAGE = f"{__package__}.tasks"


@cache
def families() -> tuple[str, ...]:
    """The family names: sub-packages of tasks/ that carry a schema.yaml (no import needed)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(_TASKS)])
                        if m.ispkg and (_TASKS / m.name / "schema.yaml").is_file()))


@cache
def get_task(family: str) -> Task:
    if family not in families():
        raise UserError(f"task: unknown model family {family!r} (known: {', '.join(families())})")
    task = importlib.import_module(f"{_PACKAGE}.{family}.task").TASK
    assert task.family == family, f"{family}/task.py exposes the Task of {task.family!r}"
    return task


def has_evaluator(family: str) -> bool:
    """Whether the family scores stages with a model of its own (HAS_EVALUATOR in its package,
    read without importing its Task; see base.Task.train_evaluator)."""
    return bool(getattr(importlib.import_module(f"{_PACKAGE}.{family}"), "HAS_EVALUATOR", False))


def validation_keys(family: str) -> tuple[str, ...]:
    """The `evaluate` keys a family's per-epoch validation during training reads (VALIDATION_KEYS in
    its package, read without torch; none by default): training depends on them, and on no other
    `evaluate` key, so editing e.g. the final evaluation's batch size retrains nothing."""
    return tuple(getattr(importlib.import_module(f"{_PACKAGE}.{family}"), "VALIDATION_KEYS", ()))


def validation_settings(config: dict) -> dict:
    """The user's `evaluate` settings that training's validation reads (`validation_keys`)."""
    return {key: config["evaluate"][key] for key in validation_keys(config["task"])}


def family_check(family: str, name: str) -> Callable | None:
    """The name `name` ("check_config", "check_dataset", "EVALUATE_KEYS") of the family's `checks.py`, or None
    when the family has no such check."""
    module = f"{_PACKAGE}.{family}.checks"
    try:
        checks = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None
    return getattr(checks, name, None)


def schema_path(family: str) -> Path:
    """The family's config keys (its schema.yaml), found without importing the family."""
    return _TASKS / family / "schema.yaml"
