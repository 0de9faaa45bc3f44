"""Run a step with its output in a log file and user errors as one line.

    run_logged("results/logs/evaluate-baseline.log", steps.evaluate_stage, label="baseline", ...)
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Callable

from .errors import UserError
from .io import os_error, sweep_temporaries
from .progress import progress

__all__ = ["run_logged", "run_step", "setup_logging"]


def setup_logging(stream) -> None:
    logger = logging.getLogger("slimflow")
    logger.handlers[:] = [logging.StreamHandler(stream)]
    logger.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextlib.contextmanager
def _progress_to(terminal):
    """Progress lines (an epoch, a probe) on the terminal as well as in the log: Snakemake shows a
    running job's stderr, never its log file until the job fails."""
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    progress.addHandler(handler)
    try:
        yield
    finally:
        progress.removeHandler(handler)


@contextlib.contextmanager
def _stderr_to(stream):
    """Send stderr to `stream`, at the file-descriptor level too, so that child processes (DDP
    ranks, DataLoader workers) and C-level warnings land in the log as well."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(stream.fileno(), 2)
    try:
        with contextlib.redirect_stderr(stream), os.fdopen(os.dup(saved), "w", buffering=1) as terminal:
            yield terminal  # the original stderr, for the one line a user must see
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _log_file(path: str):
    """The step's log, line-buffered; a full disk at close (the last flush) is not a second error."""
    f = open(path, "w", buffering=1, encoding="utf-8")
    try:
        yield f
    finally:
        with contextlib.suppress(OSError):
            f.close()


def run_logged(log_path: str | None, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call `fn(**kwargs)` with logging and stderr (progress bars, warnings) sent to `log_path`.

    A UserError ends the process with exit 1 and its one line, in the log and on the terminal;
    any other exception keeps its traceback (in the log, and on the terminal from Python).
    """
    with contextlib.ExitStack() as stack:
        terminal = None
        if log_path:
            try:
                stream = stack.enter_context(_log_file(log_path))
            except OSError as e:
                print(f"slimflow error: {os_error(log_path, e, 'cannot write the log')}", file=sys.stderr)
                sys.exit(1)
            terminal = stack.enter_context(_stderr_to(stream))
            stack.enter_context(_progress_to(terminal))
        else:
            stream = sys.stderr
        setup_logging(stream)
        try:
            return fn(**kwargs)
        except UserError as e:
            line = f"slimflow error: {e}"
            for out in (stream, terminal):  # the log may sit on the full disk that caused the error
                if out is not None:
                    with contextlib.suppress(OSError):
                        print(line, file=out, flush=True)
            sys.exit(1)
        except BrokenPipeError:  # the reader of stdout stopped early: the CLI ends quietly (__main__)
            raise
        except Exception:
            logging.getLogger("slimflow").exception("step failed with a programming error")
            raise


def run_step(smk: Any, fn: Callable[..., Any], **extra: Any) -> Any:
    """A workflow script's whole body: `fn` with the rule's input, output and params as its keyword
    arguments (`pipeline_lib.jobs` names them after `fn`'s), logged to the rule's log."""
    files = {name: list(value) if isinstance(value, list) else value
             for part in (smk.input, smk.output) for name, value in part.items()}
    sweep_temporaries(smk.output)  # what a killed earlier run of this job left half-written
    return run_logged(smk.log[0], fn, **files, **smk.params.get("args", {}), **extra)
