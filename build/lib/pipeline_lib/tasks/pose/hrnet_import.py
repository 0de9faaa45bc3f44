"""Pose initial weights: the official HRNet state dicts (deep-high-resolution-net.pytorch) on our HRNet.

    imported = import_pose(TASK, Path("pose_hrnet_w32_256x192.pth"), model_cfg, manifest)

Our HRNet is the official pose_hrnet with the same layers under other names:

    official                               ours
    conv1 / bn1 / conv2 / bn2              stem.0.0 / stem.0.1 / stem.1.0 / stem.1.1
    layer1.*                               layer1.*                      (Bottleneck names agree)
    transition{s}.{i}.0|1                  transitions.{s-1}.{i}.0|1     (a conv that changes width)
    transition{s}.{i}.0.0|1                transitions.{s-1}.{i}.0|1     (the new, strided branch)
    stage{s}.{m}.branches.*                stages.{s-2}.{m}.branches.*
    stage{s}.{m}.fuse_layers.*             stages.{s-2}.{m}.fuse.*
    final_layer.*                          final_layer.*

Widths, depths and the joint count are read from the tensors; a joint count other than the
dataset's reinitialises the heatmap head only.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ...errors import UserError
from ...weights import Imported, read_state_dict, slimflow_checkpoint, transfer

__all__ = ["import_pose", "official_to_ours"]

_STEM = {"conv1.": "stem.0.0.", "bn1.": "stem.0.1.", "conv2.": "stem.1.0.", "bn2.": "stem.1.1."}


def official_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        new = key
        for old, ours in _STEM.items():
            if key.startswith(old):
                new = ours + key[len(old):]
        m = re.match(r"transition(\d)\.(\d+)\.(0\.)?([01])\.(.*)", key)
        if m:
            new = f"transitions.{int(m[1]) - 1}.{m[2]}.{m[4]}.{m[5]}"
        m = re.match(r"stage(\d)\.(.*)", key)
        if m:
            new = f"stages.{int(m[1]) - 2}.{m[2].replace('.fuse_layers.', '.fuse.')}"
        out[new] = value
    return out


def _arch(state: dict[str, torch.Tensor], path: Path) -> dict:
    try:
        width = state["stages.0.0.branches.0.0.conv1.weight"].shape[0]
        stem = state["stem.0.0.weight"].shape[0]
    except KeyError as e:
        raise UserError(f"{path}: not an HRNet pose state dict (no {e.args[0]} after mapping the official names)") from None
    bottlenecks = len({k.split(".")[1] for k in state if k.startswith("layer1.")})
    modules = [len({k.split(".")[2] for k in state if k.startswith(f"stages.{s}.")}) for s in range(3)]
    blocks = [len({k.split(".")[5] for k in state if k.startswith(f"stages.{s}.0.branches.0.")}) for s in range(3)]
    joints = state["final_layer.weight"].shape[0] if "final_layer.weight" in state else 17
    return {"num_joints": int(joints), "width": int(width), "stem": int(stem), "bottlenecks": bottlenecks,
            "modules": modules, "blocks": blocks}


def import_pose(task, path: Path, model_cfg: dict, manifest: dict | None) -> Imported:
    from .model import ARCHS

    ckpt = slimflow_checkpoint(path, task.family)
    names = None
    if ckpt is not None:
        name, kwargs, state = ckpt["arch"]["name"], dict(ckpt["arch"]["kwargs"]), ckpt["state_dict"]
        names, source = ckpt["meta"].get("names"), "slimflow checkpoint"
    else:
        state = official_to_ours(read_state_dict(path, "an HRNet pose state dict"))
        kwargs = _arch(state, path)
        shape = {k: v for k, v in kwargs.items() if k != "num_joints"}
        name = next((n for n, a in ARCHS.items() if {**a, "modules": list(a["modules"]), "blocks": list(a["blocks"])}
                     == shape), "hrnet_custom")
        source = f"HRNet state dict ({name}, {kwargs['num_joints']} joints)"
    if manifest is not None:
        kwargs["num_joints"] = len(manifest["names"])
    arch = {"family": task.family, "name": name, "kwargs": kwargs}
    model = task.build_model(arch)
    report = transfer(model, state, task.keep_width_modules(model), path)
    return Imported(arch, model, report, names, None, source)
