"""Model families, discovered from this folder: every sub-package that defines `TASK` is one.

    get_task("detection")                       # the family's Task (imported on first use)
    loaded = load_model("results/pruned.pt")     # checkpoint → Task → network with its widths → imgsz
    loaded.model(loaded.task.example_input(loaded.imgsz))

A new family is a folder `pipeline_lib/tasks/<name>/` with `__init__.py` (its docstring and
light facts such as HAS_EVALUATOR), `task.py` exposing `TASK` (see `base.py`), a `schema.yaml`
with its config keys, and optionally `checks.py` with `check_config` / `check_dataset` (and
EVALUATE_KEYS, the `evaluate` keys its dataset check also reads); nothing
else names it (docs/FAMILIES.md).

The registry (`families`, `get_task`, `family_check`, ...) lives in `pipeline_lib.registry`, on
the ground floor, so that config, the chain and the weights import, which sit below the families,
find one by name rather than by an import pointing up (docs/ARCHITECTURE.md); it is re-exported
here, with the contract's types (`pipeline_lib.contracts`), for the callers above.

Importing this package costs nothing: torch loads with the first Task or checkpoint. Config
validation (`pipeline_lib.config`) and the preflight run a family's `checks.py`, which imports
no torch, so a bad config or dataset is answered, and a valid run scheduled, without it.
"""
from __future__ import annotations

import os

from ..contracts import Batch, Criterion, ImageSize, Manifest, StatefulCriterion, input_size
from ..lazy import lazy_exports
from ..registry import (families, family_check, get_task, has_evaluator, schema_path, validation_keys,
                        validation_settings)

# Names imported on first use (PEP 562): they need torch.
__getattr__, _lazy = lazy_exports(__name__, {"base": ("Task",),
                                             "loading": ("build_from_checkpoint", "LoadedModel", "load_model")})
__all__ = ["Manifest", "Batch", "Criterion", "StatefulCriterion", "ImageSize", "input_size", "families", "schema_path",
           "get_task", "family_check", "has_evaluator", "validation_keys", "validation_settings", "with_evaluator",
           *_lazy]


def with_evaluator(eval_cfg: dict, evaluator: str | os.PathLike | None) -> dict:
    """`evaluate`'s settings with the path of the family's evaluator, when it has one (`has_evaluator`)."""
    return {**eval_cfg, "evaluator": str(evaluator)} if evaluator else eval_cfg
