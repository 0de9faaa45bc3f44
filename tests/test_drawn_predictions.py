"""Detection's drawn images read: labels on a filled box of the class colour inside the image, small
images enlarged, a legend band when many classes show, and the report's samples with the ground
truth above each stage's predictions."""
import json

import numpy as np
from PIL import Image

from pipeline_lib.report_plots import draw_samples
from pipeline_lib.tasks import get_task
from pipeline_lib.tasks.detection.draw import LEGEND_FROM, MIN_SIDE, PALETTE, draw_boxes

NAMES = ["circle", "square", "triangle", "star", "cross"]


def _grey(path, size=(64, 48)):
    Image.new("RGB", size, (90, 90, 90)).save(path)
    return path


def _has(picture: np.ndarray, colour, rows=slice(None)) -> int:
    """How many pixels of `picture[rows]` are exactly `colour`."""
    return int((np.abs(picture[rows].astype(int) - colour).sum(axis=2) == 0).sum())


def test_a_label_at_the_top_edge_is_filled_and_inside_the_image(tmp_path):
    # a box touching the image's top and right edges: its label cannot go above it
    draw_boxes(_grey(tmp_path / "a.png"), [{"category_id": 1, "bbox": [40, 0, 24, 20], "score": 0.9}], NAMES,
               tmp_path / "out.png")
    drawn = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    scale = drawn.shape[1] // 64
    assert drawn.shape[:2] == (48 * scale, 64 * scale) and drawn.shape[1] >= MIN_SIDE
    filled = _has(drawn, PALETTE[1], slice(0, 14 * scale // 2))
    assert filled > 300, "the label's background is filled with the class colour, in the image's top rows"
    assert _has(drawn, (0, 0, 0)) > 20, "dark text on the light green label"


def test_many_classes_get_a_legend_band_and_scores_on_the_boxes(tmp_path):
    boxes = [{"category_id": c, "bbox": [2 + 11 * c, 2 + 8 * c, 14, 12], "score": 0.5} for c in range(LEGEND_FROM)]
    draw_boxes(_grey(tmp_path / "a.png"), boxes, NAMES, tmp_path / "many.png")
    draw_boxes(_grey(tmp_path / "a.png"), boxes[:2], NAMES, tmp_path / "few.png")
    many, few = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("RGB")) for n in ("many", "few"))
    assert many.shape[1] == few.shape[1] and many.shape[0] > few.shape[0], "a band below the image"
    band = slice(few.shape[0], None)
    for c in range(LEGEND_FROM):
        assert _has(many, PALETTE[c], band) > 50, f"class {c}'s swatch in the legend"


def test_ground_truth_is_drawn_without_scores_below_the_score_threshold(tmp_path):
    draw_boxes(_grey(tmp_path / "a.png"), [{"category_id": 2, "bbox": [10, 10, 20, 20]}], NAMES, tmp_path / "gt.png")
    draw_boxes(_grey(tmp_path / "a.png"), [{"category_id": 2, "bbox": [10, 10, 20, 20], "score": 0.1}], NAMES,
               tmp_path / "low.png")
    assert _has(np.asarray(Image.open(tmp_path / "gt.png").convert("RGB")), PALETTE[2]) > 100
    assert _has(np.asarray(Image.open(tmp_path / "low.png").convert("RGB")), PALETTE[2]) == 0


def test_report_samples_show_the_ground_truth_above_the_predictions(tmp_path, monkeypatch):
    items = [{"image": str(_grey(tmp_path / f"{i}.png")), "image_id": i, "width": 64, "height": 48,
              "boxes": [[3, 0.5, 0.5, 0.4, 0.5]]} for i in (1, 2)]
    manifest = {"task": "detection", "names": NAMES, "splits": {"val": items}}
    (tmp_path / "p.json").write_text(json.dumps([{"image_id": 1, "category_id": 0, "bbox": [5, 5, 20, 20],
                                                  "score": 0.9}]))
    task = get_task("detection")
    truth = task.report_truth(manifest, 2)
    assert truth[0] == [{"category_id": 3, "bbox": [19.2, 12.0, 25.6, 24.0]}]
    (with_truth,) = draw_samples(task, manifest, {"baseline": tmp_path / "p.json"}, tmp_path / "s", n=2)
    monkeypatch.setattr(type(task), "report_truth", lambda self, manifest, n: [])  # a family without ground truth
    (without,) = draw_samples(task, manifest, {"baseline": tmp_path / "p.json"}, tmp_path / "t", n=2)
    tall, short = (Image.open(p).size for p in (with_truth, without))
    assert tall[0] == short[0] and tall[1] > 1.6 * short[1], "a ground-truth row above the predictions"
    picture = np.asarray(Image.open(with_truth).convert("RGB"))
    assert _has(picture, PALETTE[3]) > 0 and _has(picture, PALETTE[0]) > 0  # star (truth), circle (prediction)
