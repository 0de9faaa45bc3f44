"""Top-down human pose (HRNet V1): COCO keypoints data, Gaussian heatmaps, OKS AP from COCOeval."""
