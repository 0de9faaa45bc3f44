"""Anchors fitted to the data: k-means on letterboxed box sizes."""
import numpy as np

from pipeline_lib.tasks.detection.anchors import box_sizes, fit_anchors


def _items(sizes, width=200, height=100):
    # One image per (w, h) in pixels of a width x height image, stored as YOLO-normalized boxes.
    return [{"width": width, "height": height, "boxes": [[0, 0.5, 0.5, w / width, h / height]]} for w, h in sizes]


def test_box_sizes_follow_the_letterbox_scale():
    wh = box_sizes(_items([(50, 20)]), imgsz=100)  # 200 px long side -> 100: half size
    assert np.allclose(wh, [[25, 10]])


def test_anchors_recover_size_clusters_sorted_by_area():
    rng = np.random.default_rng(0)
    centres = [(8, 8), (12, 16), (20, 14), (24, 24), (30, 40), (44, 30), (50, 50), (64, 80), (90, 70)]
    sizes = [tuple(np.array(c) * rng.uniform(0.97, 1.03, 2)) for c in centres for _ in range(20)]
    anchors = np.array(fit_anchors(_items(sizes, 100, 100), imgsz=100)).reshape(-1, 2)
    assert np.allclose(anchors, centres, rtol=0.05)
    assert fit_anchors(_items(sizes, 100, 100), imgsz=100) == anchors.reshape(3, 6).tolist()  # deterministic


def test_too_few_boxes_keep_the_defaults():
    assert fit_anchors(_items([(10, 10)] * 5), imgsz=64) is None
