"""Pose's check before any job runs (the preflight; docs/FAMILIES.md): imports no torch.

A user dataset's COCO keypoints files, image headers and keypoint names (`coco.check_coco_keypoints`),
and `evaluate.sigmas` against its keypoint count: a set other than COCO's 17 needs its own sigmas,
and a wrong count would otherwise stop the first validation epoch, after Snakemake had removed
the previous results of the jobs it scheduled.
"""
from __future__ import annotations

from pathlib import Path

from .coco import check_coco_keypoints, check_sigmas, locate
from .synthetic import KEYPOINTS  # numpy and PIL, no torch

__all__ = ["EVALUATE_KEYS", "check_dataset"]

# The `evaluate` keys check_dataset reads besides the dataset: the preflight passes them and checks
# again when one of them changes.
EVALUATE_KEYS = ("sigmas",)


def check_dataset(dataset_cfg: dict, evaluate: dict) -> list[Path]:
    """The user folder's annotations and image headers, and one sigma per keypoint; the paths read
    ([] for the embedded generator, whose people carry COCO's 17 keypoints)."""
    if dataset_cfg["path"] is None:
        check_sigmas(evaluate["sigmas"], len(KEYPOINTS), "the embedded generator's people (dataset.path: null)")
        return []
    root = Path(dataset_cfg["path"])
    names, read = check_coco_keypoints(root)
    check_sigmas(evaluate["sigmas"], len(names), str(locate(root)["train"][0]))
    return read
