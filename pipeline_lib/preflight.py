"""Checks that run before Snakemake schedules any job, so a bad input never costs a good result.

    preflight(config, results="results", cache=".snakemake/slimflow/preflight.json")

Snakemake deletes a job's previous outputs before the job runs. A step that then fails on a bad
input (a dataset with a broken label, a damaged checkpoint) would have destroyed a good
`results/data/dataset.json` or `metrics/baseline.json` — and a new dataset.json reruns the whole
chain. So `workflow/rules/common.smk` runs, after config validation and before any job:

- the family's dataset check (`Task.check_dataset`: structure and labels, no image decoding),
- `model.weights`, read as the baseline stage will read it (a refused pickle stops here),
- an integrity check of every `*.pt` under results/ (the checksum in each file; for a published
  checkpoint also its format, meta.imgsz, and that its weights load into its arch).

`check_device` runs in Snakemake's `onstart` when jobs run on this machine (not at parse time:
a cluster job may land on a node with the GPU the submitting machine lacks).

Both are cached in `cache` by (path, size, mtime) of every file they read, so an unchanged
dataset and unchanged checkpoints cost a few `stat` calls per invocation.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .checkpoint import FORMAT, check_checkpoint, checkpoint_imgsz
from .config import config_hash
from .errors import UserError
from .io import write_json
from .torchfile import load_sealed
from .weights import check_weights

__all__ = ["preflight", "check_dataset", "check_checkpoints", "check_device"]

log = logging.getLogger("slimflow")


def _stamp(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _stamps(paths) -> dict[str, list[int] | None]:
    return {str(p): _stamp(Path(p)) for p in dict.fromkeys(str(p) for p in paths)}


def _unchanged(entry: dict | None) -> bool:
    return entry is not None and all(_stamp(Path(p)) == s for p, s in entry["files"].items())


def check_dataset(config: dict, cache: dict) -> None:
    """The family's pre-run dataset check, skipped when nothing it read has changed since it passed."""
    from .tasks import get_task

    key = config_hash({"task": config["task"], "dataset": config["dataset"]})
    entry = cache.get("dataset")
    if entry is not None and entry.get("key") == key and _unchanged(entry):
        return
    read = get_task(config["task"]).check_dataset(config["dataset"])
    cache["dataset"] = {"key": key, "files": _stamps(read)}


def check_checkpoints(results: Path, cache: dict, family: str | None = None) -> None:
    """Every torch file under `results`: its checksum (and for a published checkpoint, its parts
    and that it is a `family` model)."""
    from .tasks import build_from_checkpoint

    passed = cache.setdefault("checkpoints", {})
    for path in sorted(results.rglob("*.pt")):
        stamp = _stamp(path)
        if stamp is None or passed.get(str(path)) == [*stamp, family]:
            continue
        resume_state = "work" in path.relative_to(results).parts
        obj = load_sealed(path, remedy="delete it to start this stage over" if resume_state else
                          "delete it and rerun the step that writes it")
        if isinstance(obj, dict) and obj.get("format") == FORMAT:  # a published checkpoint: its parts too
            check_checkpoint(path, obj, family)
            checkpoint_imgsz(path, obj)  # every step that reads a published checkpoint needs it
            build_from_checkpoint(obj, path)  # arch and weights fit together
        passed[str(path)] = [*stamp, family]
    for name in [p for p in passed if not Path(p).exists()]:
        del passed[name]


def preflight(config: dict, results: str | os.PathLike = "results",
              cache: str | os.PathLike = ".snakemake/slimflow/preflight.json") -> None:
    """Run the checks (UserError on the first failure); remember what passed in `cache`."""
    cache_path = Path(cache)
    try:
        state = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    try:
        check_dataset(config, state)
        check_weights(config, state)
        check_checkpoints(Path(results), state, config["task"])
    finally:  # what passed stays remembered, even when a later check fails
        try:
            write_json(cache_path, state)
        except UserError as e:  # a read-only or full disk: the checks ran, only the cache is lost
            log.warning("preflight cache not written: %s", e)


def check_device(spec: str) -> None:
    """`device:` names a device this machine has (UserError otherwise)."""
    from .engine import select_device

    select_device(spec)
