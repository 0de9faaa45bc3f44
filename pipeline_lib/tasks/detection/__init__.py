"""YOLOv5-style detection: YOLO-format data, anchor-based detector, COCOeval metrics."""
