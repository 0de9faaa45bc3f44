"""COCOeval-based detection metrics on hand-built cases."""
import pytest

from pipeline_lib.tasks.detection.evaluate import coco_detection_metrics

GT = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"},
                 {"id": 2, "width": 100, "height": 100, "file_name": "b.png"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
                      {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 40, 20], "area": 800, "iscrowd": 0}],
      "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]}


def _det(image_id, cls, bbox, score):
    return {"image_id": image_id, "category_id": cls, "bbox": bbox, "score": score}


def test_perfect_detections_score_one():
    dets = [_det(1, 0, [10, 10, 30, 30], 0.9), _det(2, 1, [50, 50, 40, 20], 0.8)]
    m = coco_detection_metrics(GT, dets)
    assert m == pytest.approx({"mAP50_95": 1.0, "mAP50": 1.0, "precision": 1.0, "recall": 1.0})


def test_wrong_class_and_loose_box():
    # Image 2's box has the wrong class; image 1's box overlaps at IoU 0.64 (counts at 0.5, not at 0.75).
    dets = [_det(1, 0, [10, 10, 30, 30 * 0.64], 0.9), _det(2, 0, [50, 50, 40, 20], 0.8)]
    m = coco_detection_metrics(GT, dets)
    assert m["recall"] == pytest.approx(0.5) and m["precision"] == pytest.approx(1.0)
    assert m["mAP50"] == pytest.approx(0.5)  # class a found, class b missed
    assert 0 < m["mAP50_95"] < m["mAP50"]


def test_no_detections_scores_zero():
    assert coco_detection_metrics(GT, []) == {"mAP50_95": 0.0, "mAP50": 0.0, "precision": 0.0, "recall": 0.0}
