"""Named points where a test can freeze a step, to kill it exactly there (fault injection).

    SLIMFLOW_FAILPOINT="write last.pt@2" SLIMFLOW_FAILPOINT_MARK=/tmp/hit snakemake ...
    # the 2nd time a process reaches failpoint("write last.pt"), it touches /tmp/hit and waits to be killed

Unset (always, outside tests) a failpoint is one dictionary lookup. Points: "step" (an optimizer
step), "evaluate" (validation during training), "write <file name>" (an atomic write, after the
data is on disk and before the rename).
"""
from __future__ import annotations

import collections
import os
import time
from pathlib import Path

__all__ = ["failpoint"]

_hits: collections.Counter = collections.Counter()


def failpoint(name: str) -> None:
    spec = os.environ.get("SLIMFLOW_FAILPOINT")
    if not spec:
        return
    target, _, nth = spec.rpartition("@")
    if name != target:
        return
    _hits[name] += 1
    if _hits[name] == int(nth):
        Path(os.environ["SLIMFLOW_FAILPOINT_MARK"]).write_text(f"{name}@{nth} pid {os.getpid()}\n")
        while True:  # frozen here until the test's SIGKILL
            time.sleep(60)
