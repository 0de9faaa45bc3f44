"""Model families. `get_task("detection")` returns the family's Task; families load lazily."""
from __future__ import annotations

import importlib

from .base import Task

__all__ = ["Task", "get_task", "FAMILIES"]

FAMILIES = {"detection": "pipeline_lib.tasks.detection", "reid": "pipeline_lib.tasks.reid"}


def get_task(family: str) -> Task:
    if family not in FAMILIES:
        raise KeyError(f"unknown task family {family!r}; known: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[family]).TASK
