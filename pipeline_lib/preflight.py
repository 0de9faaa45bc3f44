"""Checks that run before Snakemake schedules any job, so a bad input never costs a good result.

    preflight(config, results="results", cache=".snakemake/slimflow/preflight.json")

Snakemake deletes a job's previous outputs before the job runs. A step that then fails on a bad
input (a dataset with a broken label, a damaged checkpoint) would have destroyed a good
`results/data/dataset.json` or `metrics/baseline.json` — and a new dataset.json reruns the whole
chain. So `workflow/rules/common.smk` runs, after config validation and before any job:

- the family's dataset check (`checks.check_dataset`: structure and labels, no image decoding;
  pose: also one `evaluate.sigmas` value per keypoint),
- `model.weights`, read as the baseline stage will read it (a refused pickle stops here),
- an integrity check of every `*.pt` under results/ (the checksum in each file; for a published
  checkpoint also its format, meta.imgsz, and that its weights load into its arch),
- a LoRA stage's `targets` against its parent checkpoint, when that exists already.

`check_device` runs in Snakemake's `onstart` when jobs run on this machine (not at parse time:
a cluster job may land on a node with the GPU the submitting machine lacks).

They are cached in `cache` by (path, size, mtime) of every file they read, so an unchanged
dataset and unchanged checkpoints cost a few `stat` calls per invocation: torch is imported only
when a checkpoint or `model.weights` needs checking (a family's dataset check imports none).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from .chain import data_folder, dataset_settings
from .chain import parent as chain_parent
from .config import config_hash
from .errors import UserError
from .io import write_json

__all__ = ["preflight", "check_dataset", "check_checkpoints", "check_lora_targets", "check_device"]

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
    """The family's pre-run check of each dataset (the experiment's, and the finetune's own when
    set), skipped when nothing it read, nor a setting it was given, has changed since it passed.
    A family whose `checks.py` lists EVALUATE_KEYS gets those `evaluate` settings too."""
    from .tasks import family_check

    check = family_check(config["task"], "check_dataset")
    # `evaluate` keys the family's check also reads (pose: the sigmas, one per keypoint of the dataset)
    evaluate = {k: config["evaluate"][k] for k in family_check(config["task"], "EVALUATE_KEYS") or ()}
    for folder in dict.fromkeys(data_folder(artifact, config) for artifact in ("baseline", "pruned_finetuned")):
        dataset_cfg = dataset_settings(folder, config)[0]
        key = config_hash({"task": config["task"], "dataset": dataset_cfg, **({"evaluate": evaluate} if evaluate else {})})
        entry = cache.get(f"dataset:{folder}")
        if entry is not None and entry.get("key") == key and _unchanged(entry):
            continue
        read = (check(dataset_cfg, evaluate) if evaluate else check(dataset_cfg)) if check else []
        cache[f"dataset:{folder}"] = {"key": key, "files": _stamps(read)}


def check_checkpoints(results: Path, cache: dict, family: str | None = None) -> None:
    """Every torch file under `results`: its checksum (and for a published checkpoint, its parts
    and that it is a `family` model)."""
    passed = cache.setdefault("checkpoints", {})
    unchecked = {path: stamp for path in sorted(results.rglob("*.pt"))
                 if (stamp := _stamp(path)) is not None and passed.get(str(path)) != [*stamp, family]}
    if unchecked:  # torch only for a file to check
        from .checkpoint import FORMAT, check_checkpoint, checkpoint_imgsz
        from .tasks import build_from_checkpoint
        from .torchfile import load_sealed
    for path, stamp in unchecked.items():
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


def check_lora_targets(config: dict, results: Path, cache: dict) -> None:
    """Each LoRA stage's `targets` select layers of its parent checkpoint, where that exists
    already (a job would fail on it only after Snakemake removed the stage's previous outputs)."""
    from .config import TRAINED_STAGES, stage_config

    passed = cache.setdefault("lora_targets", {})
    for artifact, section in TRAINED_STAGES.items():
        lora, parent = stage_config(config, artifact).get("lora"), chain_parent("", artifact, config)
        path = Path(replace(parent, results=str(results)).checkpoint) if lora and parent else None
        stamp = _stamp(path) if path is not None else None
        if stamp is None or passed.get(section) == [str(path), *stamp, lora["targets"]]:
            continue
        from .adapters import resolve_targets  # torch: only for a parent to check
        from .tasks import load_model

        loaded = load_model(path)
        resolve_targets(loaded.model, lora["targets"], loaded.task.keep_width_modules(loaded.model),
                        f"stages.{section}.lora")
        passed[section] = [str(path), *stamp, lora["targets"]]


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
        if config["model"].get("weights"):
            from .weights import check_weights  # torch

            check_weights(config, state)
        check_checkpoints(Path(results), state, config["task"])
        check_lora_targets(config, Path(results), state)
    finally:  # what passed stays remembered, even when a later check fails
        try:
            write_json(cache_path, state)
        except UserError as e:  # a read-only or full disk: the checks ran, only the cache is lost
            log.warning("preflight cache not written: %s", e)


def check_device(spec: str) -> None:
    """`device:` names a device this machine has (UserError otherwise)."""
    from .engine import select_device

    select_device(spec)
