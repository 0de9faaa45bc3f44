"""User-facing errors: one precise line, no traceback.

    raise UserError("data/labels/train/a.txt:3: class id 7 >= nc=3 (fix the label or add the class to names)")
    raise ConfigError(("model", "anchors", 1), "each row holds w, h pairs: an even count of numbers")

Steps raise UserError for mistakes the user can fix (bad dataset, config, ratio, checkpoint);
the CLI and the Snakemake scripts print its message alone and exit 1. Any other exception is a
programming error and keeps its traceback. A ConfigError names a config key; config validation
turns it into `file:line: key: message` for the file that set that key.
"""
from __future__ import annotations

import re

__all__ = ["UserError", "ConfigError"]

_TERMINAL_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class UserError(Exception):
    """A mistake in the user's input; the message names the file/line/key and what to do."""

    def __str__(self) -> str:  # without terminal escape codes: torch bolds words of the errors a message may quote
        return _TERMINAL_ESCAPES.sub("", super().__str__())


class ConfigError(UserError):
    """A config value that is wrong, found by code rather than the schema; `key` is its path."""

    def __init__(self, key: tuple, message: str):
        self.key, self.message = tuple(key), message
        super().__init__(f"{'.'.join(str(k) for k in self.key)}: {message}")
