"""The one checkpoint format of every stage: plain containers, loadable with weights_only=True.

    save_checkpoint("results/baseline.pt", model, arch, meta)
    ckpt = load_checkpoint("results/baseline.pt", family="detection")

`arch` = {"family", "name", "kwargs"} names the nominal network (its family builds it:
`pipeline_lib.tasks.build_from_checkpoint`); a pruned network differs only in channel widths,
which `match_widths` reads back from the state_dict shapes. This module knows no family.
The file carries a checksum of its contents (`pipeline_lib.torchfile`), verified on every
load; a checkpoint whose parts do not fit together is a UserError naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError
from .torchfile import load_sealed, save_sealed
from .versions import versions

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "check_checkpoint", "checkpoint_imgsz", "load_weights",
           "match_widths"]

FORMAT = "slimflow/ckpt-v1"
_KEYS = ("format", "arch", "state_dict", "meta")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, arch: dict, meta: dict[str, Any]) -> None:
    # contiguous: a model trained channels_last publishes the same tensors as one trained NCHW
    state = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    obj = {"format": FORMAT, "arch": arch, "state_dict": state, "meta": {**meta, "versions": versions()}}
    save_sealed(path, obj)


def load_checkpoint(path: str | os.PathLike, family: str | None = None) -> dict:
    """Load and check a checkpoint; every failure is one UserError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    ckpt = load_sealed(path, remedy="delete it and rerun the step that writes it")
    check_checkpoint(path, ckpt, family)
    return ckpt


def check_checkpoint(path: str | os.PathLike, ckpt: Any, family: str | None = None) -> None:
    """The checks of `load_checkpoint` after the file loaded: format, keys, types, family."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a slimflow checkpoint (expected format {FORMAT!r})")
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise UserError(f"{path}: checkpoint lacks key(s) {', '.join(missing)}")
    _check_parts(path, ckpt)
    if family is not None and ckpt["arch"]["family"] != family:
        raise UserError(f"{path}: checkpoint is a {ckpt['arch']['family']!r} model but the config's task is {family!r}")


def _check_parts(path: Path, ckpt: dict) -> None:
    """The types every reader relies on: arch {family, name, kwargs}, a state_dict of tensors, a meta mapping."""
    arch, state, meta = ckpt["arch"], ckpt["state_dict"], ckpt["meta"]
    if not (isinstance(arch, dict) and isinstance(arch.get("family"), str) and isinstance(arch.get("name"), str)
            and isinstance(arch.get("kwargs"), dict)):
        raise UserError(f"{path}: checkpoint arch must be a mapping {{family, name, kwargs}}, found {_short(arch)}")
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise UserError(f"{path}: checkpoint state_dict must map parameter names to tensors")
    if not isinstance(meta, dict):
        raise UserError(f"{path}: checkpoint meta must be a mapping, found {_short(meta)}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checkpoint_imgsz(path: str | os.PathLike, ckpt: dict) -> int | list[int]:
    """The input size a checkpoint was trained at (meta.imgsz): an int or [h, w]."""
    imgsz = ckpt["meta"].get("imgsz")
    ok = (isinstance(imgsz, int) and imgsz > 0) or (
        isinstance(imgsz, (list, tuple)) and len(imgsz) == 2 and all(isinstance(v, int) and v > 0 for v in imgsz))
    if isinstance(imgsz, bool) or not ok:
        raise UserError(f"{path}: checkpoint meta.imgsz must be the input size (an int or [h, w]), "
                        f"found {_short(imgsz)}; the checkpoint was not written by slimflow's train or prune")
    return imgsz


def match_widths(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Resize convs, linears and norms in place to the tensor shapes in `state_dict`.

    This is how a pruned network is rebuilt from its nominal architecture: channel surgery only
    changes widths, so the shapes in the state_dict are the whole width spec.
    """
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        weight = state_dict.get(prefix + "weight")
        if weight is None or not hasattr(module, "weight") or module.weight is None:
            continue
        if weight.shape == module.weight.shape:
            continue
        if isinstance(module, nn.modules.conv._ConvNd):
            depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
            module.out_channels = weight.shape[0]
            module.groups = weight.shape[0] if depthwise else module.groups
            module.in_channels = weight.shape[1] * module.groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = weight.shape
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.num_features = weight.shape[0]
        else:
            raise ValueError(f"cannot resize {name} ({type(module).__name__}) to {tuple(weight.shape)}")
        for pname, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            new = state_dict.get(prefix + pname)
            if new is not None and new.shape != tensor.shape:
                replacement = torch.empty_like(new, dtype=tensor.dtype)
                if isinstance(tensor, nn.Parameter):
                    setattr(module, pname, nn.Parameter(replacement, requires_grad=tensor.requires_grad))
                else:
                    setattr(module, pname, replacement)
    return model


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], keep: list[nn.Module],
                 source: str | os.PathLike = "checkpoint") -> nn.Module:
    """Resize `model` to the widths in `state_dict` and load it; a mismatch is one UserError line.

    `keep` are the modules whose output width the architecture fixes (heads, embeddings; pruning
    may narrow their inputs): weights of another output width there mean the arch and the weights
    disagree (e.g. nc 80 in the arch, a 2-class head in the weights).
    """
    for module in keep:
        name = next(n for n, m in model.named_modules() if m is module)
        for pname, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            saved = state_dict.get(f"{name}.{pname}")
            if saved is not None and tensor.dim() and (saved.dim() != tensor.dim() or saved.shape[0] != tensor.shape[0]):
                raise UserError(f"{source}: weights do not fit the checkpoint's arch: {name}.{pname} has "
                                f"{saved.shape[0] if saved.dim() else 'no'} outputs, the arch needs {tensor.shape[0]}")
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise UserError(f"{source}: weights do not fit the checkpoint's arch: {len(missing)} missing "
                        f"(e.g. {missing[0] if missing else '-'}), {len(unexpected)} unexpected "
                        f"(e.g. {unexpected[0] if unexpected else '-'})")
    try:
        match_widths(model, state_dict)
        model.load_state_dict(state_dict)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise UserError(f"{source}: weights do not fit the checkpoint's arch: {first}") from None
    return model

