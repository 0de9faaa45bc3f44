"""A config given on a command line: the files merged in order, with `--set KEY=VALUE` laid over them.

    cfg = apply_settings([Path("config/config.yaml")], ["train.epochs=5", "prune.ratio=0.3"])
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .config import load_config
from .errors import UserError

__all__ = ["apply_settings"]


def apply_settings(config_paths: list[Path], assignments: list[str]) -> dict:
    """The config files (merged in order, later ones winning) with `key.sub=value` assignments laid
    over them (values read as YAML), validated as a whole."""
    overrides: dict = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {assignment}: expected KEY=VALUE with a dotted key, e.g. train.epochs=5")
        *parents, leaf = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {assignment}: {part} is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--set {assignment}: the value is not valid YAML") from None
    try:
        return load_config(config_paths, overrides)
    except UserError as e:
        raise UserError(f"{e} (with --set {' '.join(assignments)})" if assignments else str(e)) from None
