"""The one checkpoint format of every stage: plain containers, loadable with weights_only=True.

    save_checkpoint("results/baseline.pt", model, arch, meta)
    ckpt = load_checkpoint("results/baseline.pt", family="detection")

`arch` = {"family", "name", "kwargs"} names the nominal network (its family builds it:
`pipeline_lib.tasks.build_from_checkpoint`); a pruned network differs only in channel widths,
which `match_widths` reads back from the state_dict shapes. This module knows no family.
"""
from __future__ import annotations

import os
import pickle
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .errors import UserError
from .io import atomic_path

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "match_widths", "versions"]

FORMAT = "slimflow/ckpt-v1"
_KEYS = ("format", "arch", "state_dict", "meta")


def versions() -> dict[str, str | None]:
    import torchvision

    from .provenance import git_revision

    return {"slimflow": __version__, "git": git_revision(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "python": platform.python_version()}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, arch: dict, meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    obj = {"format": FORMAT, "arch": arch, "state_dict": state, "meta": {**meta, "versions": versions()}}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike, family: str | None = None) -> dict:
    """Load and check a checkpoint; every failure is one UserError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if isinstance(e, pickle.UnpicklingError) and "Unsupported global" in str(e):
            why = "contains pickled objects that could run code; slimflow loads plain tensors only"
        else:
            why = f"truncated or corrupted ({type(e).__name__})"
        raise UserError(f"{path}: not a loadable checkpoint: {why}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a slimflow checkpoint (expected format {FORMAT!r})")
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise UserError(f"{path}: checkpoint lacks key(s) {', '.join(missing)}")
    if family is not None and ckpt["arch"].get("family") != family:
        raise UserError(f"{path}: checkpoint is a {ckpt['arch'].get('family')!r} model but the config's task is {family!r}")
    return ckpt


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

