"""Top-down human pose (HRNet V1): COCO keypoints data, Gaussian heatmaps, OKS AP from COCOeval."""
from .task import PoseTask

TASK = PoseTask()

__all__ = ["TASK", "PoseTask"]
