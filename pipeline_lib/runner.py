"""Run a step with its output in a log file and user errors as one line.

    run_logged("results/logs/train-baseline.log", steps.train_stage, stage="baseline", ...)
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Callable

from .errors import UserError

__all__ = ["run_logged", "setup_logging"]


def setup_logging(stream) -> None:
    logger = logging.getLogger("slimflow")
    logger.handlers[:] = [logging.StreamHandler(stream)]
    logger.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run_logged(log_path: str | None, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call `fn(**kwargs)` with logging and stderr (progress bars, warnings) sent to `log_path`.

    A UserError ends the process with exit 1 and its one line, in the log and on the terminal;
    any other exception keeps its traceback (in the log, and on the terminal from Python).
    """
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(log_path, "w", buffering=1, encoding="utf-8")) if log_path else sys.stderr
        stack.enter_context(contextlib.redirect_stderr(stream))
        setup_logging(stream)
        try:
            return fn(**kwargs)
        except UserError as e:
            line = f"slimflow error: {e}"
            print(line, file=stream, flush=True)
            if stream is not sys.__stderr__:
                print(line, file=sys.__stderr__, flush=True)
            sys.exit(1)
        except Exception:
            logging.getLogger("slimflow").exception("step failed with a programming error")
            raise
