"""User-facing errors: one precise line, no traceback.

    raise UserError("data/labels/train/a.txt:3: class id 7 >= nc=3 (fix the label or add the class to names)")

Steps raise UserError for mistakes the user can fix (bad dataset, config, ratio, checkpoint);
the CLI and the Snakemake scripts print its message alone and exit 1. Any other exception is a
programming error and keeps its traceback.
"""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A mistake in the user's input; the message names the file/line/key and what to do."""
