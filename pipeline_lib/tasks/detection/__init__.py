"""YOLOv5-style detection: YOLO-format data, anchor-based detector, COCOeval metrics."""
from .task import DetectionTask

TASK = DetectionTask()

__all__ = ["TASK", "DetectionTask"]
