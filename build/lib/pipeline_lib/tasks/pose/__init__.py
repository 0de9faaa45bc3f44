"""Top-down human pose (HRNet V1): COCO keypoints data, Gaussian heatmaps, OKS AP from COCOeval."""

# The `evaluate` keys training's per-epoch validation reads: the OKS sigmas of the dataset's keypoints
# and the flip test (not `detections`: training validates on the ground-truth boxes).
VALIDATION_KEYS = ("sigmas", "flip_test")
