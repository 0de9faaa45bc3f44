"""Checks that run before Snakemake schedules any job, so a bad input never costs a good result.

    preflight(config, results="results", cache=".snakemake/slimflow/preflight.json")

Snakemake deletes a job's previous outputs before the job runs. A step that then fails on a bad
input (a dataset with a broken label, a damaged checkpoint) would have destroyed a good
`results/data/dataset.json` or `metrics/baseline.json` — and a new dataset.json reruns the whole
chain. So `workflow/rules/common.smk` runs, after config validation and before any job:

- the family's dataset check (`checks.check_dataset`: structure and labels, no image decoding;
  pose: also one `evaluate.sigmas` value per keypoint), then the dataset's content fingerprint
  (`fingerprint.content_fingerprint`, prepare_dataset's param through `dataset_fingerprint`), each
  image's header checked as it is hashed (`check_image`),
- `model.weights`, read as the baseline stage will read it (a refused pickle stops here),
- an integrity check of every `*.pt` under results/ (the checksum in each file; for a published
  checkpoint also its format, meta.imgsz, and that its weights load into its arch),
- a LoRA stage's `targets` against its parent checkpoint, when that exists already,
- every ONNX file under results/export, and `export.int8_float_layers` (`export.checks`).

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
from .fingerprint import PREFLIGHT_CACHE, content_fingerprint, dataset_root, file_stamp, rehash_due
from .io import os_error, write_json

__all__ = ["CACHE", "preflight", "check_dataset", "check_image", "check_writable", "dataset_fingerprint", "check_checkpoints", "check_lora_targets", "check_device"]

log = logging.getLogger("slimflow")

CACHE = PREFLIGHT_CACHE
_FINGERPRINTS: dict[str, str | None] = {}  # this process's dataset checks: settings hash -> content fingerprint


def _stamps(paths) -> dict[str, list[int] | None]:
    return {str(p): file_stamp(Path(p)) for p in dict.fromkeys(str(p) for p in paths)}


def _unchanged(entry: dict) -> bool:
    return isinstance(entry.get("files"), dict) and all(file_stamp(Path(p)) == s for p, s in entry["files"].items())


_IMAGES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_NOT_8_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}  # 16-bit or float: a loader's 8-bit conversion saturates


def _jpeg_reaches_its_end(data: bytes) -> bool:
    """The JPEG's segments, walked by their lengths and through each scan's data, reach its end
    marker (EOI). Data after it (a camera's trailer) is allowed, as PIL allows it; an EOI inside
    a segment (an EXIF thumbnail's) is skipped with that segment, so it cannot hide a cut image."""
    i = 2  # after SOI
    while i + 1 < len(data):
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xD9:
            return True
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, or a marker without a length
            i += 1 if marker == 0xFF else 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
        while marker == 0xDA and i < len(data):  # a scan's entropy-coded data: up to a marker other than FF00, RSTn
            i = data.find(b"\xff", i)
            if i < 0:
                return False
            if data[i + 1:i + 2] not in (b"\x00", *(bytes([m]) for m in range(0xD0, 0xD8))):
                break
            i += 2
    return False


def check_image(path: Path) -> None:
    """An image file of a dataset, by its header and structure, without decoding its pixels (PIL's
    verify(); a JPEG ends with its end marker); another file passes. UserError naming it otherwise."""
    if path.suffix.lower() not in _IMAGES:
        return
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode, jpeg = im.mode, im.format == "JPEG"
            im.verify()
        truncated = jpeg and not _jpeg_reaches_its_end(path.read_bytes())  # verify() reads a PNG to its end, not a JPEG
    except Exception as e:
        raise UserError(f"{path}: unreadable image ({type(e).__name__}); remove it or replace it with a valid image") from None
    if truncated:
        raise UserError(f"{path}: unreadable image (a JPEG without its end: truncated); remove it or replace it")
    if mode in _NOT_8_BIT:
        raise UserError(f"{path}: a {mode} image (16-bit or float); slimflow reads 8-bit images: convert it to "
                        "8 bits per channel (scaling, not clipping)")


def _section(cache: dict, name: str) -> dict:
    if not isinstance(cache.get(name), dict):  # a hand-edited or foreign cache: check anew
        cache[name] = {}
    return cache[name]


def _dataset_key(folder: str, config: dict) -> tuple[dict, dict, str]:
    """The dataset settings of `folder`, the `evaluate` keys the family's check reads, and their hash."""
    from .tasks import family_check

    # `evaluate` keys the family's check also reads (pose: the sigmas, one per keypoint of the dataset)
    evaluate = {k: config["evaluate"][k] for k in family_check(config["task"], "EVALUATE_KEYS") or ()}
    dataset_cfg = dataset_settings(folder, config)[0]
    key = config_hash({"task": config["task"], "dataset": dataset_cfg, **({"evaluate": evaluate} if evaluate else {})})
    return dataset_cfg, evaluate, key


def _check_one_dataset(folder: str, config: dict, cache: dict) -> str | None:
    """The family's check of one dataset and its content fingerprint, skipped when nothing it read,
    nor a setting it was given, has changed since it passed (and no hash is due to be verified)."""
    from .tasks import family_check

    dataset_cfg, evaluate, key = _dataset_key(folder, config)
    entry = cache.get(f"dataset:{folder}")
    if not (isinstance(entry, dict) and entry.get("key") == key and _unchanged(entry)
            and not rehash_due(entry.get("hashes", {}))):
        check = family_check(config["task"], "check_dataset")
        read = (check(dataset_cfg, evaluate) if evaluate else check(dataset_cfg)) if check else []
        hashes = entry.get("hashes", {}) if isinstance(entry, dict) else {}
        path = dataset_cfg.get("path")
        fingerprint = None if path is None else content_fingerprint(read, dataset_root(path), hashes, check_image)
        entry = cache[f"dataset:{folder}"] = {"key": key, "files": _stamps(read), "fingerprint": fingerprint,
                                              "hashes": hashes}
    _FINGERPRINTS[key] = entry["fingerprint"]
    return entry["fingerprint"]


def check_dataset(config: dict, cache: dict) -> None:
    """The family's pre-run check of each dataset (the experiment's, and the finetune's own when
    set). A family whose `checks.py` lists EVALUATE_KEYS gets those `evaluate` settings too."""
    for folder in dict.fromkeys(data_folder(artifact, config) for artifact in ("baseline", "pruned_finetuned")):
        _check_one_dataset(folder, config, cache)


def dataset_fingerprint(folder: str, config: dict, cache: str | os.PathLike = CACHE) -> str | None:
    """The content fingerprint of `folder`'s dataset (None for an embedded one): the prepare_dataset
    job's param, so an edited dataset reruns it. From this process's check, else the cached one."""
    key = _dataset_key(folder, config)[2]
    if key not in _FINGERPRINTS:
        state = _load_state(Path(cache))
        try:
            _check_one_dataset(folder, config, state)
        finally:
            _save_state(Path(cache), state)
    return _FINGERPRINTS[key]


def check_checkpoints(results: Path, cache: dict, family: str | None = None, weights: str | None = None) -> None:
    """Every torch file under `results`: its checksum (and for a published checkpoint, its parts
    and that it is a `family` model); `weights` (model.weights, kept there perhaps: a YOLOv5
    best.pt) is the weights check's, read by the safe importer (docs/WEIGHTS.md)."""
    passed = _section(cache, "checkpoints")
    own = {os.path.abspath(weights)} if weights else set()
    unchecked = {path: stamp for path in sorted(results.rglob("*.pt")) if os.path.abspath(path) not in own
                 and (stamp := file_stamp(path)) is not None and passed.get(str(path)) != [*stamp, family]}
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

    passed = _section(cache, "lora_targets")
    for artifact, section in TRAINED_STAGES.items():
        lora, parent = stage_config(config, artifact).get("lora"), chain_parent("", artifact, config)
        path = Path(replace(parent, results=str(results)).checkpoint) if lora and parent else None
        stamp = file_stamp(path) if path is not None else None
        if stamp is None or passed.get(section) == [str(path), *stamp, lora["targets"]]:
            continue
        from .adapters import resolve_targets  # torch: only for a parent to check
        from .tasks import load_model

        loaded = load_model(path)
        resolve_targets(loaded.model, lora["targets"], loaded.task.keep_width_modules(loaded.model),
                        f"stages.{section}.lora")
        passed[section] = [str(path), *stamp, lora["targets"]]


def _load_state(path: Path) -> dict:
    """The cache, if it belongs to this project folder (a copied or moved project checks anew)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or state.get("cwd") != os.getcwd():
        return {"cwd": os.getcwd()}
    return state


def _save_state(path: Path, state: dict) -> None:
    try:
        write_json(path, state)
    except UserError as e:  # a read-only or full disk: the checks ran, only the cache is lost
        log.warning("preflight cache not written: %s", e)


def preflight(config: dict, results: str | os.PathLike = "results", cache: str | os.PathLike = CACHE) -> None:
    """Run the checks (UserError on the first failure); remember what passed in `cache`."""
    cache_path = Path(cache)
    state = _load_state(cache_path)
    try:
        check_dataset(config, state)
        if config["model"].get("weights"):
            from .weights import check_weights  # torch

            check_weights(config, state)
        check_checkpoints(Path(results), state, config["task"], config["model"].get("weights"))
        check_lora_targets(config, Path(results), state)
        from .export.checks import check_exported  # onnx: only for a file to check

        check_exported(Path(results), config["export"], _section(state, "exported"))
    finally:  # what passed stays remembered, even when a later check fails
        _save_state(cache_path, state)


def check_writable(results: str | os.PathLike) -> None:
    """`results` and its folders take a new file (a read-only file system or folder is one UserError
    line before any job, instead of Snakemake's traceback in the first job that writes there)."""
    import tempfile

    root = Path(results)
    for folder in [root, *(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        try:
            fd, probe = tempfile.mkstemp(prefix=".slimflow-probe.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise os_error(folder, e) from None


def check_device(spec: str) -> None:
    """`device:` names a device this machine has (UserError otherwise)."""
    from .engine import select_device

    select_device(spec)
