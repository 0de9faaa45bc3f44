"""Start from weights the user already has (`model.weights`, `python -m pipeline_lib import-weights`).

    imported = import_weights(get_task("detection"), "best.pt", cfg["model"], manifest)  # arch from the file
    imported.model, imported.arch, imported.report.line()   # "Transferred 343/349 items from best.pt ..."
    write_imported("best.pt", "yolov5n_imported.pt", "detection", cfg["model"])        # once; weights_only from then on

Families read their published formats (`Task.import_weights`): YOLOv5 pickles through the
restricted unpickler of `torchpickle`, torchvision and HRNet state dicts through
`torch.load(weights_only=True)`. A slimflow checkpoint (what `import-weights` writes) is read
here for every family, so a converted file behaves as its source does. Nothing is downloaded.
"""
from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import FORMAT, save_checkpoint
from ..errors import UserError
from ..io import sha256_file
from ..registry import get_task
from ..torchfile import load_plain, load_sealed
from ..torchpickle import Refused, read_torch_pickle

__all__ = ["Imported", "TransferReport", "transfer", "read_state_dict", "record_state_dict", "slimflow_checkpoint",
           "import_weights", "write_imported", "import_weights_file", "check_weights",
           "read_torch_pickle", "Refused"]

log = logging.getLogger("slimflow")


@dataclass
class TransferReport:
    transferred: int  # tensors of the model that came from the file
    total: int  # tensors in the model's state_dict
    reinitialised: list[str] = field(default_factory=list)  # head tensors whose shape differed (e.g. another nc)

    def line(self, source: str | os.PathLike) -> str:
        heads = (f"; {len(self.reinitialised)} start fresh (another class count, or not in the file's format, "
                 f"e.g. {self.reinitialised[0]})" if self.reinitialised else "")
        return f"Transferred {self.transferred}/{self.total} items from {source}{heads}"


@dataclass
class Imported:
    arch: dict  # {"family", "name", "kwargs"}: what checkpoints store; from the file, nc from the dataset
    model: nn.Module
    report: TransferReport
    names: list[str] | None = None  # the classes (keypoints) the file was trained on, when it says
    imgsz: Any = None  # the input size it was trained at, when it says
    source: str = ""  # the format read, for the log ("YOLOv5 checkpoint, FP16, ema")


def transfer(model: nn.Module, state: dict[str, torch.Tensor], heads: list[nn.Module],
             source: str | os.PathLike, fresh: tuple[str, ...] = ()) -> TransferReport:
    """Copy `state` into `model`: every tensor outside `heads` must be there with its shape (else
    one UserError naming it, as the weights would be silently half-used); head tensors whose shape
    differs (another class count) keep their fresh initialisation, as YOLOv5's intersect_dicts does.
    Tensors under the prefixes `fresh` (parts the file's format has no weights for, e.g. a ReID neck
    over an ImageNet backbone) may be absent; so may BN's num_batches_tracked (older files)."""
    target = model.state_dict()
    head_prefixes = tuple(f"{n}." for n, m in model.named_modules() if any(m is h for h in heads)) + tuple(fresh)
    unexpected = sorted(set(state) - set(target))
    if unexpected:
        raise UserError(f"{source}: {len(unexpected)} tensors have no place in the {type(model).__name__} built "
                        f"for them (e.g. {unexpected[0]}); the file is not this architecture")
    loaded, skipped = {}, []
    for key, tensor in target.items():
        saved = state.get(key)
        if saved is not None and saved.shape == tensor.shape:
            loaded[key] = saved.to(tensor.dtype)
        elif key.startswith(head_prefixes):
            skipped.append(key)
        elif saved is None and key.endswith("num_batches_tracked"):
            continue
        else:
            found = "missing" if saved is None else f"shape {tuple(saved.shape)}, the model needs {tuple(tensor.shape)}"
            raise UserError(f"{source}: {key}: {found}; the file does not fit the architecture it describes "
                            "(a pruned or edited model?)")
    model.load_state_dict(loaded, strict=False)
    return TransferReport(len(loaded), len(target), skipped)


def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A published state dict (.pth of tensors, possibly wrapped as {'state_dict': ...}) loaded with
    weights_only=True (`load_plain`): a file that pickles code is refused before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found (model.weights)")
    obj = load_plain(path, remedy=f"expected {what}")
    for key in ("state_dict", "model", "net"):  # common wrappers of training checkpoints
        if isinstance(obj, dict) and isinstance(obj.get(key), dict) and not isinstance(obj.get(key), torch.Tensor):
            inner = obj[key]
            if inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in obj.items())):
        raise UserError(f"{path}: expected {what}: a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel's prefix


def record_state_dict(module: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state_dict of a module recorded by `read_torch_pickle` ({"class", "_parameters",
    "_buffers", "_modules", ...}): parameters and persistent buffers, with dotted names."""
    out: dict[str, torch.Tensor] = {}
    skip = set(module.get("_non_persistent_buffers_set") or ())
    for kind in ("_parameters", "_buffers"):
        for name, tensor in (module.get(kind) or {}).items():
            if isinstance(tensor, torch.Tensor) and name not in skip:
                out[prefix + name] = tensor
    for name, child in (module.get("_modules") or {}).items():
        if isinstance(child, dict):
            out.update(record_state_dict(child, f"{prefix}{name}."))
    return out


def slimflow_checkpoint(path: str | os.PathLike, family: str) -> dict | None:
    """The checkpoint at `path` if slimflow wrote it (import-weights, train), else None; one of
    another family than `family` is a UserError."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return None
    try:
        ckpt = load_sealed(path, remedy="convert the weights again with import-weights")
    except UserError as e:
        if "pickled objects" in str(e):  # a foreign pickle (YOLOv5): the family reads it
            return None
        raise
    if not (isinstance(ckpt, dict) and ckpt.get("format") == FORMAT):
        return None
    if ckpt["arch"]["family"] != family:
        raise UserError(f"{path}: a {ckpt['arch']['family']!r} checkpoint; the config's task is {family!r}")
    return ckpt


def import_weights(task, path: str | os.PathLike, model_cfg: dict, manifest: dict | None) -> Imported:
    """The family's network initialised from `path`, with the dataset's classes when `manifest` is given."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model.weights not found (a file you have; slimflow downloads nothing)")
    imported = task.import_weights(path, model_cfg, manifest)
    log.info("%s (%s)", imported.report.line(path), imported.source or "weights")
    return imported


def write_imported(path_in: str | os.PathLike, path_out: str | os.PathLike, task, model_cfg: dict) -> Imported:
    """Convert `path_in` once into a slimflow checkpoint (loadable with weights_only=True)."""
    imported = import_weights(task, path_in, model_cfg, None)
    imgsz = imported.imgsz if imported.imgsz is not None else model_cfg["imgsz"]
    meta = {"stage": "imported", "imported_from": str(path_in), "source_format": imported.source,
            "names": imported.names, "imgsz": imgsz}
    save_checkpoint(path_out, imported.model, imported.arch, meta)
    log.info("wrote %s: %s, arch %s", path_out, imported.source, imported.arch["name"])
    return imported


def import_weights_file(*, path_in: str | os.PathLike, path_out: str | os.PathLike, family: str,
                        model_cfg: dict) -> dict:
    """`python -m pipeline_lib import-weights IN OUT`: IN converted for `family` with a resolved `model` section."""
    imported = write_imported(path_in, path_out, get_task(family), model_cfg)
    return {"arch": imported.arch, "transferred": imported.report.transferred, "total": imported.report.total}


def check_weights(config: dict, cache: dict) -> None:
    """Preflight: `model.weights` reads and fits its family. What passed is remembered by the file's
    sha256, hashed on every check (one file, ~1 GB/s): a file swapped with its size and mtime kept
    is checked anew, which a cache keyed by (size, mtime) would have let through."""
    path = config["model"].get("weights")
    if not path:
        return
    try:
        digest = sha256_file(path)
    except OSError:  # missing or unreadable: import_weights names it
        digest = None
    stamp = [str(path), config["task"], digest] if digest else None
    if stamp is not None and cache.get("weights") == stamp:
        return
    import_weights(get_task(config["task"]), path, config["model"], None)
    cache["weights"] = stamp
