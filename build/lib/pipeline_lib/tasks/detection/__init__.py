"""YOLOv5-style detection: YOLO-format data, anchor-based detector, COCOeval metrics."""

# The `evaluate` keys training's per-epoch validation reads (they define the mAP the best epoch is chosen by).
VALIDATION_KEYS = ("conf_thres", "iou_thres", "max_det")
