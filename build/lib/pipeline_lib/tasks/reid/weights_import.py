"""ReID initial weights: torchvision ResNet state dicts and reid-strong-baseline checkpoints.

    imported = import_reid(TASK, Path("resnet50-0676ba61.pth"), model_cfg, manifest)

torchvision publishes ResNets as state dicts (`conv1.weight`, `layer4.2.bn3.bias`, `fc.weight`);
ReIDNet's trunk *is* a torchvision ResNet (`backbone.`), so the mapping is a prefix, minus the
ImageNet classifier `fc`; the BNNeck and the identity classifier start fresh. The depth (18 ...
101) is read from the keys. reid-strong-baseline (Luo et al.) names the same trunk `base.`, its
BNNeck `bottleneck.` and its classifier `classifier.`: its state dicts load with weights_only,
and its whole-model pickles (ignite's ModelCheckpoint of `modeling.baseline.Baseline`) through
the restricted unpickler, which records their layers without importing `modeling`.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from ...errors import UserError
from ...weights import Imported, read_state_dict, read_torch_pickle, record_state_dict, slimflow_checkpoint, transfer

__all__ = ["import_reid", "resnet_name"]

# blocks per layer1..4 and whether blocks are Bottlenecks (conv3) -> torchvision's name
_DEPTHS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34",
           ((3, 4, 6, 3), True): "resnet50", ((3, 4, 23, 3), True): "resnet101"}


def resnet_name(state: dict[str, torch.Tensor], prefix: str, path: Path) -> str:
    blocks = tuple(len({k[len(prefix):].split(".")[1] for k in state if k.startswith(f"{prefix}layer{i}.")})
                   for i in range(1, 5))
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state
    name = _DEPTHS.get((blocks, bottleneck))
    if name is None:
        raise UserError(f"{path}: a ResNet with {blocks} blocks per layer{' (Bottleneck)' if bottleneck else ''} "
                        f"is not one of {', '.join(sorted(set(_DEPTHS.values())))}")
    return name


def _strong_baseline_pickle(path: Path) -> dict[str, torch.Tensor]:
    tree = read_torch_pickle(path, ("modeling.",))
    if not (isinstance(tree, dict) and "_modules" in tree):
        raise UserError(f"{path}: not a reid-strong-baseline model (expected a pickled modeling.baseline.Baseline)")
    return record_state_dict(tree)


def import_reid(task, path: Path, model_cfg: dict, manifest: dict | None) -> Imported:
    ckpt = slimflow_checkpoint(path, task.family)
    names = None
    if ckpt is not None:
        kwargs, state, names, source = dict(ckpt["arch"]["kwargs"]), ckpt["state_dict"], ckpt["meta"].get("names"), \
            "slimflow checkpoint"
    else:
        try:
            raw = read_state_dict(path, "a torchvision ResNet or reid-strong-baseline state dict")
        except UserError:
            if not zipfile.is_zipfile(path):
                raise
            raw = _strong_baseline_pickle(path)  # a pickled Baseline: recorded, not run
        if any(k.startswith("base.") for k in raw):  # reid-strong-baseline's names
            state = {"backbone." + k[5:] if k.startswith("base.") else
                     "bnneck." + k[11:] if k.startswith("bottleneck.") else k: v for k, v in raw.items()}
            source, prefix = "reid-strong-baseline", "backbone."
        else:
            state = {f"backbone.{k}": v for k, v in raw.items() if not k.startswith("fc.")}  # ImageNet head
            source, prefix = "torchvision ResNet", "backbone."
        kwargs = {"num_classes": int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else 1,
                  "name": resnet_name(state, prefix, path), "last_stride": model_cfg["last_stride"],
                  "neck_feat": model_cfg["neck_feat"]}
        source = f"{source} {kwargs['name']}"
    if manifest is not None:
        kwargs["num_classes"] = manifest.get("nc", len(manifest["names"]))
    arch = {"family": task.family, "name": kwargs["name"], "kwargs": kwargs}
    model = task.build_model(arch)
    # Only the classifier may differ in shape (another identity count); the trunk must fit whole.
    report = transfer(model, state, [model.classifier], path, fresh=("bnneck.", "classifier."))
    return Imported(arch, model, report, names, None, source)
