"""A package's names imported on first use (PEP 562), so that importing the package costs nothing:
torch and ONNX Runtime load with the first name that needs them.

    __getattr__, __all__ = lazy_exports(__name__, {"train": ("train_stage",), "export": ("export_stage",)})
"""
from __future__ import annotations

import importlib
from typing import Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], object], list[str]]:
    """(the package's `__getattr__`, its `__all__`) for names defined in its modules: {module: names}."""
    module_of = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str):
        if name in module_of:
            return getattr(importlib.import_module(f".{module_of[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, list(module_of)
