"""The report's tables and plots on synthetic metrics, prune.json and predictions files (no training):
summary.md's short table, the clamped layers, the channels plot, the Pareto front, detection's
PR curves and per-class AP from COCOeval's precision array, its P/R/F1 curves and confusion matrix,
and the drawn sample predictions (pose with the dataset's own skeleton)."""
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline_lib.summary import write_summary
from pipeline_lib.report_plots import draw_samples, pareto_front, plot_channels, plot_pareto
from pipeline_lib.tasks import get_task
from pipeline_lib.tasks.detection.evaluate import coco_eval
from pipeline_lib.tasks.detection.matching import confidence_curves, confusion_matrix
from pipeline_lib.tasks.detection.report import class_ap, precision_array, write_figures

PRUNE = {"config": {"min_channels": 8}, "ratio_requested": 0.5, "ratio_achieved": 0.41, "threshold": 0.02,
         "before": {"flops": 2e9, "params": 1.8e6}, "after": {"flops": 0.9e9, "params": 0.6e6},
         "layers": {"stem.bn": {"before": 16, "after": 8}, "b.bn": {"before": 64, "after": 20},
                    "c.bn": {"before": 32, "after": 16}},
         "clamped": [{"layer": "stem.conv", "bns": ["stem.bn"], "channels": 16, "kept": 8, "reason": ["min_channels"]},
                     {"layer": "c.conv", "bns": ["c.bn"], "channels": 32, "kept": 16, "reason": ["tied γ"]}]}

TABLE = pd.DataFrame([
    {"stage": "baseline", "runtime": "torch", "mAP50_95": 0.5, "mAP50": 0.7, "fitness": 0.52, "params": 1.8e6,
     "flops": 2e9, "latency_ms": 3.0, "latency_p90_ms": 3.5, "file_bytes": 7e6, "speedup_vs_baseline": 1.0},
    {"stage": "pruned", "runtime": "torch", "mAP50_95": 0.3, "mAP50": 0.4, "fitness": 0.31, "params": 0.6e6,
     "flops": 0.9e9, "latency_ms": np.nan, "latency_p90_ms": np.nan, "file_bytes": 2e6, "speedup_vs_baseline": np.nan},
    {"stage": "baseline [onnx_fp32]", "runtime": "onnx_fp32", "mAP50_95": 0.5, "mAP50": 0.7, "fitness": 0.52,
     "params": 1.8e6, "flops": 2e9, "latency_ms": 1.0, "latency_p90_ms": 1.2, "file_bytes": 7e6,
     "speedup_vs_baseline": 1.0},
    {"stage": "pruned_finetuned [onnx_int8]", "runtime": "onnx_int8", "mAP50_95": 0.48, "mAP50": 0.69,
     "fitness": 0.5, "params": 0.6e6, "flops": 0.9e9, "latency_ms": 0.4, "latency_p90_ms": 0.5, "file_bytes": 1e6,
     "speedup_vs_baseline": 2.5}])

RED = np.array([214, 39, 40])  # matplotlib's tab:red, the clamped layers' colour


def test_summary_md_starts_with_one_short_table_without_nan_then_details(tmp_path):
    write_summary(TABLE, tmp_path / "s.csv", tmp_path / "s.md", sections={"Provenance": "table"},
                  metric="mAP50_95", prune_report=PRUNE)
    md = (tmp_path / "s.md").read_text()
    first_table = re.search(r"^\|.*?\n(?!\|)", md, re.S | re.M).group(0)
    header = [c.strip() for c in first_table.splitlines()[0].strip("|").split("|")]
    assert header == ["artifact", "mAP50_95", "params (M)", "GFLOPs", "latency (ms)", "speedup"]
    assert len(first_table.splitlines()) == 2 + len(TABLE)
    assert re.search(r"^\| pruned +\| +0\.3 +\| +0\.6 +\| +0\.9 +\| – +\| – +\|$", first_table, re.M)
    assert not re.search(r"\bnan\b", md, re.I)
    assert md.index("# Details") < md.index("## Pruning") < md.index("## All metrics") < md.index("## Provenance")
    assert "requested ratio: **0.5**" in md and "achieved ratio: **0.41**" in md
    assert "clamped layers (kept more channels than the threshold asks): 2: `stem.conv` (16→8, min_channels), " \
           "`c.conv` (32→16, tied γ)" in md


def test_training_cost_and_data_columns_when_stages_report_them(tmp_path):
    training = {"trainable_params": [np.nan, np.nan, 60_000, np.nan], "adapter_bytes": [np.nan, np.nan, 245_760, np.nan],
                "train_s_per_epoch": [8.1, np.nan, 7.2, np.nan], "train_peak_mem_mb": [900.0, np.nan, 850.5, np.nan],
                "data": ["results/data/dataset.json"] * 2 + ["results/data/finetune/dataset.json"] * 2}
    table = TABLE.assign(**training)
    table.loc[0, "trainable_params"] = 1.8e6
    write_summary(table, tmp_path / "s.csv", tmp_path / "s.md", metric="mAP50_95", prune_report=PRUNE)
    md = (tmp_path / "s.md").read_text()
    short = re.search(r"^\|.*?\n(?!\|)", md, re.S | re.M).group(0)
    assert "| data " in short.splitlines()[0] and "results/data/finetune/dataset.json" in short
    cost = md[md.index("## Training cost"):md.index("## All metrics")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in cost.splitlines() if line.startswith("| ")]
    assert rows == [["artifact", "trainable params", "LoRA adapter (KiB, share of checkpoint)", "s/epoch",
                     "peak memory (MiB)"],
                    ["baseline", "1,800,000 (100.0%)", "–", "8.1", "900"],
                    ["baseline [onnx_fp32]", "60,000 (3.3%)", "240.0 (3.5%)", "7.2", "850.5"]]  # of 7e6 bytes
    assert "trainable" not in md[md.index("## All metrics"):] and not re.search(r"\bnan\b", md, re.I)


def test_channels_plot_marks_clamped_layers_in_red(tmp_path):
    plot_channels(PRUNE, tmp_path / "with.png")
    plot_channels({**PRUNE, "clamped": []}, tmp_path / "without.png")

    def red_pixels(path):
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
        return int((np.abs(pixels - RED).sum(axis=1) < 10).sum())
    assert red_pixels(tmp_path / "with.png") > 2000  # two bars, and the legend patch
    assert red_pixels(tmp_path / "without.png") < 400  # only the legend patch


def test_pareto_front_keeps_only_points_nothing_beats():
    x, y = np.array([1.0, 2.0, 0.5, 3.0, 2.0]), np.array([0.5, 0.7, 0.2, 0.6, 0.9])
    assert pareto_front(x, y).tolist() == [2, 0, 4]  # 0.5 ms/0.2, 1 ms/0.5, 2 ms/0.9; (2, 0.7) and (3, 0.6) beaten


def test_pareto_plot_draws_with_and_without_sweep_points(tmp_path):
    sweep = [{"label": "r=0.3", "flops": 1.4e9, "mAP50_95": 0.45}, {"label": "r=0.7", "flops": 0.5e9, "mAP50_95": 0.2}]
    plot_pareto(TABLE, "mAP50_95", tmp_path / "p.png", sweep)
    plot_pareto(TABLE, "mAP50_95", tmp_path / "q.png")
    assert Image.open(tmp_path / "p.png").size[0] > 800
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "p.png")), np.asarray(Image.open(tmp_path / "q.png")))


GT = {"images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in (1, 2, 3)],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
                      {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 40, 20], "area": 800, "iscrowd": 0},
                      {"id": 3, "image_id": 3, "category_id": 0, "bbox": [5, 50, 20, 40], "area": 800, "iscrowd": 0}],
      "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}, {"id": 2, "name": "c"}]}
DETS = [{"image_id": 1, "category_id": 0, "bbox": [11, 10, 30, 25], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [52, 50, 40, 22], "score": 0.6},
        {"image_id": 2, "category_id": 0, "bbox": [0, 0, 20, 20], "score": 0.7},
        {"image_id": 3, "category_id": 0, "bbox": [5, 55, 20, 30], "score": 0.4}]


def test_per_class_ap_and_pr_curve_reproduce_cocoeval_stats():
    ev = coco_eval(GT, DETS)
    p = precision_array(GT, DETS)
    ap = class_ap(p)
    assert np.isnan(ap[2])  # class c has no ground truth: COCOeval's -1
    assert np.nanmean(ap) == pytest.approx(ev.stats[0])  # mAP50_95 is the mean of the per-class AP
    assert 0 < ap[0] < 1 and 0 < ap[1] < 1
    pr_at_50 = p[0][:, :2]  # IoU 0.5, the classes with ground truth
    assert pr_at_50.mean() == pytest.approx(ev.stats[1])  # the PR curve's area is mAP50


def test_precision_recall_against_confidence_match_within_a_class_at_iou_half():
    curves = confidence_curves(GT, DETS, 3)
    at = {conf: int(np.searchsorted(curves["confidence"], conf)) for conf in (0.3, 0.5, 0.8)}
    # class a: hits at 0.9 and 0.4, a miss at 0.7 (image 2 has no box of class a); b: one hit at 0.6
    assert curves["precision"][0, at[0.5]] == pytest.approx(0.5) and curves["recall"][0, at[0.5]] == 0.5
    assert curves["precision"][0, at[0.3]] == pytest.approx(2 / 3) and curves["recall"][0, at[0.3]] == 1
    assert curves["precision"][1, at[0.8]] == 1 and curves["recall"][1, at[0.8]] == 0  # none kept
    assert curves["f1"][1, at[0.5]] == pytest.approx(1)
    assert np.isnan(curves["precision"][2]).all() and list(curves["count"]) == [2, 1, 0]


def test_confusion_matrix_rows_predicted_columns_true_background_last():
    wrong_class = [dict(d, category_id=1) if d["image_id"] == 3 else d for d in DETS]
    low = [{"image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 30], "score": 0.1}]  # under 0.25: not counted
    matrix = confusion_matrix(GT, wrong_class + low, 3)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1  # image 1: a as a
    expected[1, 1] = 1  # image 2: b as b
    expected[0, 3] = 1  # image 2: an a where nothing is
    expected[1, 0] = 1  # image 3: the a box detected as b
    np.testing.assert_array_equal(matrix, expected)
    missed = confusion_matrix(GT, [], 3)
    assert list(missed[3]) == [2, 1, 0, 0] and missed[:3].sum() == 0  # every box missed: the background row


def test_detection_report_figures_through_the_task(tmp_path):
    gt_path = tmp_path / "val_coco.json"
    gt_path.write_text(json.dumps(GT))
    (tmp_path / "a.json").write_text(json.dumps(DETS))
    (tmp_path / "b.json").write_text("[]")  # a stage without detections: no curve, AP 0
    task = get_task("detection")
    paths = task.report_figures({"coco_gt": {"val": str(gt_path)}, "names": ["a", "b", "c"]},
                                {"baseline": tmp_path / "a.json", "pruned": tmp_path / "b.json"}, tmp_path / "figs")
    assert sorted(p.name for p in paths) == ["confidence_curves.png", "confusion_matrix.png", "per_class_ap.png",
                                             "pr_curves.png"]
    assert all(Image.open(p).size[1] > 200 for p in paths)
    assert write_figures(GT, {"baseline": DETS}, ["a", "b", "c"], tmp_path / "again")[0].exists()


def _image(path, size=(64, 48), colour=(90, 90, 90)):
    Image.new("RGB", size, colour).save(path)
    return str(path)


def test_detection_samples_draw_boxes_of_the_first_val_images(tmp_path):
    items = [{"image": _image(tmp_path / f"{i}.png"), "image_id": i} for i in (1, 2, 3)]
    manifest = {"task": "detection", "names": ["a", "b"], "splits": {"val": items}}
    (tmp_path / "p.json").write_text(json.dumps([{"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20],
                                                  "score": 0.9}]))
    task = get_task("detection")
    samples = task.report_samples(manifest, tmp_path / "p.json", 2)
    assert [str(s[0]) for s in samples] == [items[0]["image"], items[1]["image"]]
    assert samples[0][1] == [] and samples[1][1][0]["category_id"] == 1
    written = draw_samples(task, manifest, {"baseline": tmp_path / "p.json", "sparse": tmp_path / "p.json"},
                           tmp_path / "samples", n=2)
    assert [p.name for p in written] == ["baseline.png", "sparse.png"]
    picture = np.asarray(Image.open(written[0]).convert("RGB")).reshape(-1, 3)
    assert len(np.unique(picture, axis=0)) > 3  # grey images, white page, and the drawn box and label


def test_reid_samples_are_ranked_strips_with_matches_marked(tmp_path):
    (tmp_path / "query").mkdir(), (tmp_path / "gallery").mkdir()
    query = [{"image": _image(tmp_path / "query/0001_c1s1_000101_00.jpg", (16, 32)), "pid": 1, "camid": 1}]
    gallery = [{"image": _image(tmp_path / f"gallery/{name}.jpg", (16, 32), (200, 200, 200)), "pid": pid, "camid": 2}
               for name, pid in (("0002_c2s1_000201_00", 2), ("0001_c2s1_000301_00", 1))]
    manifest = {"task": "reid", "names": ["0001", "0002"], "splits": {"query": query, "gallery": gallery}}
    (tmp_path / "p.json").write_text(json.dumps([{"query": "0001_c1s1_000101_00.jpg", "ap": 0.5, "ranked": [
        {"image": "0002_c2s1_000201_00.jpg", "distance": 0.1}, {"image": "0001_c2s1_000301_00.jpg", "distance": 0.2}]}]))
    task = get_task("reid")
    [(path, prediction)] = task.report_samples(manifest, tmp_path / "p.json", 4)
    assert [r["match"] for r in prediction["ranked"]] == [False, True]
    assert task.draw(path, prediction, manifest["names"], tmp_path / "strip.png")
    strip = np.asarray(Image.open(tmp_path / "strip.png").convert("RGB")).astype(int)
    assert strip.shape[1] > 3 * 16 and strip.shape[0] == 32 + 4
    assert (np.abs(strip[:, :, :] - [220, 40, 40]).sum(axis=2) == 0).any()  # rank 1 is another person: red
    assert (np.abs(strip[:, :, :] - [40, 170, 40]).sum(axis=2) == 0).any()  # rank 2 is the query's: green
    assert not task.draw(path, {"embedding": [0.0, 1.0]}, manifest["names"], tmp_path / "none.png")


def _pose_files(tmp_path, names, skeleton, keypoints):
    """A one-image val split whose one person is annotated and predicted at `keypoints`."""
    (tmp_path / "val").mkdir()
    _image(tmp_path / "val/a.png", (64, 64), (0, 0, 0))
    gt = {"images": [{"id": 7, "file_name": "a.png", "width": 64, "height": 64}],
          "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "keypoints": keypoints}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps([{"image_id": 7, "category_id": 1, "score": 0.8,
                                                  "keypoints": keypoints}]))
    return {"task": "pose", "names": names, "skeleton": skeleton, "coco_gt": {"val": str(tmp_path / "gt.json")},
            "image_dirs": {"val": str(tmp_path / "val")}}


def test_pose_samples_draw_the_skeleton(tmp_path):
    names = ["nose", "left_shoulder", "right_shoulder", "left_hip"]
    keypoints = [32, 10, 0.9, 20, 20, 0.9, 44, 20, 0.9, 20, 50, 0.05]  # left hip below the threshold
    manifest = _pose_files(tmp_path, names, [[2, 3], [2, 4]], keypoints)  # 1-based, as COCO writes it
    task = get_task("pose")
    [(path, sample)] = task.report_samples(manifest, tmp_path / "p.json", 3)
    assert path == tmp_path / "val/a.png" and sample["people"][0]["score"] == 0.8
    assert task.draw(path, sample, names, tmp_path / "drawn.png")
    drawn = np.asarray(Image.open(tmp_path / "drawn.png").convert("RGB")).astype(int)
    assert drawn[20, 32].sum() > 0  # the shoulder-to-shoulder limb crosses the middle
    assert drawn[35, 20].sum() == 0  # no limb to the left hip: its confidence is below 0.2
    assert not task.draw(path, {"heatmaps": [[0.0]]}, names, tmp_path / "none.png")


def test_pose_draws_the_datasets_own_skeleton_not_cocos_person(tmp_path):
    """Landmarks named like COCO's shoulders but joined by the dataset's skeleton only: the drawing
    shows its limb (nose to left shoulder) and not the person's shoulder-to-shoulder limb; the ground
    truth comes with the same skeleton."""
    names = ["nose", "left_shoulder", "right_shoulder"]
    keypoints = [32, 50, 2, 20, 20, 2, 44, 20, 2]
    manifest = _pose_files(tmp_path, names, [[1, 2]], keypoints)
    task = get_task("pose")
    [(path, sample)] = task.report_samples(manifest, tmp_path / "p.json", 1)
    [truth] = task.report_truth(manifest, 1)
    assert truth == {"people": [{"keypoints": keypoints}], "skeleton": [(0, 1)]}
    for name, drawn_item in (("pred", sample), ("truth", truth)):
        assert task.draw(path, drawn_item, names, tmp_path / f"{name}.png")
        drawn = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB")).astype(int)
        assert drawn[35, 26].sum() > 0, "the dataset's limb, nose to left shoulder, is drawn"
        assert drawn[20, 32].sum() == 0, "COCO's shoulder-to-shoulder limb is not the dataset's"


def test_summary_md_shows_int8_beside_fp32_of_the_same_stage(tmp_path):
    fp32 = {"stage": "pruned_finetuned [onnx_fp32]", "runtime": "onnx_fp32", "mAP50_95": 0.5, "mAP50": 0.7,
            "fitness": 0.52, "params": 0.6e6, "flops": 0.9e9, "latency_ms": 0.6, "latency_p90_ms": 0.7,
            "file_bytes": 2.4e6, "speedup_vs_baseline": 1.67}
    table = pd.concat([TABLE, pd.DataFrame([fp32])], ignore_index=True)
    table["int8_calibration"] = table["runtime"].map({"onnx_int8": "percentile"})
    table["int8_float_layers"] = table["runtime"].map({"onnx_int8": 2})
    write_summary(table, tmp_path / "s.csv", tmp_path / "s.md", metric="mAP50_95", prune_report=PRUNE)
    md = (tmp_path / "s.md").read_text()
    section = md[md.index("## INT8 against FP32"):md.index("## Pruning")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    assert rows == [["stage", "calibration", "float layers", "FP32 mAP50_95", "INT8 mAP50_95", "change", "FP32 ms",
                     "INT8 ms", "INT8 speedup", "size ratio"],
                    ["pruned_finetuned", "percentile", "2", "0.5", "0.48", "-0.02", "0.6", "0.4", "1.5", "0.417"]]
    write_summary(TABLE, tmp_path / "s.csv", tmp_path / "s.md", metric="mAP50_95")  # no FP32 of that stage
    assert "INT8 against FP32" not in (tmp_path / "s.md").read_text()
