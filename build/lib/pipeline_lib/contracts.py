"""The types a model family and the rest of slimflow exchange: typing only, no torch at run time.

    manifest: Manifest = task.prepare_dataset(cfg["dataset"], out_dir, seed=0)
    loss, items = criterion(model, batch)          # a Criterion; batch: Batch, batch["images"]: (B, 3, H, W)
    h, w = input_size(cfg["model"]["imgsz"])        # an ImageSize: 320 or [256, 128]

The engine (`Criterion`), the loaders (`ImageSize`) and the families (`tasks.base.Task`) all
read these, so they live on the ground floor (docs/ARCHITECTURE.md) and import nothing of
pipeline_lib; torch is named in annotations only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypedDict, Union, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Manifest", "Batch", "Criterion", "StatefulCriterion", "ImageSize", "input_size"]

# The network's input size: one int (a square) or (height, width). Configs write a list [h, w].
ImageSize = Union[int, tuple[int, int], list[int]]


def input_size(imgsz: ImageSize) -> tuple[int, int]:
    """(h, w) of an ImageSize: an int is a square, a pair is [h, w]."""
    return (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))


class Manifest(TypedDict):
    """What `prepare_dataset` returns and the pipeline writes to results/data/dataset.json.

    These keys are read outside the family (logs, checkpoints' meta, provenance, the report);
    a family adds keys of its own beside them (e.g. detection's `coco_gt`).
    """

    task: str  # the family that wrote it
    names: list[str]  # class (detection), identity (reid) or keypoint (pose) names
    counts: dict[str, Any]  # per split: images, boxes, identities ... for the log and the report
    checksums: dict[str, str]  # content hashes: a changed dataset must not resume an old run
    splits: dict[str, list[dict]]  # split -> items; "train" and "val" at least


class Batch(TypedDict, total=False):
    """A loader's batch: a dict of tensors (moved to the device as a whole by the engine).

    `images` is the one key every family provides and code outside the family reads (export
    parity, INT8 calibration): float32 in [0, 1], (B, 3, H, W) at the configured imgsz. Everything
    else (targets, ids, original sizes) belongs to the family's criterion and evaluate.
    """

    images: torch.Tensor


@runtime_checkable
class Criterion(Protocol):
    """`criterion(model, batch) -> (loss, {name: float})`: the engine's view of a family's loss."""

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]: ...


@runtime_checkable
class StatefulCriterion(Criterion, Protocol):
    """A criterion with learned state (ReID's class centres): saved in the resume state, restored on resume."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
