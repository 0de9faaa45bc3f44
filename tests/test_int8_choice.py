"""`export.int8: auto`: INT8 is kept only when faster than its FP32 and within the accuracy budget,
and summary.md says which and why (real summary_table and write_summary on metrics files)."""
import json

import pytest

from pipeline_lib.config import load_config
from pipeline_lib.export.int8_choice import int8_verdict
from pipeline_lib.jobs import step_args
from pipeline_lib.layout import Results
from pipeline_lib.report import summary_table
from pipeline_lib.summary import write_summary


@pytest.mark.parametrize("int8, keep, words", [
    ({"mAP50_95": 0.668, "latency_ms": 0.5}, True, "kept: INT8 runs 1.60x its FP32's speed"),
    ({"mAP50_95": 0.673, "latency_ms": 0.9}, False, "dropped: INT8 is not faster, 0.89x"),
    ({"mAP50_95": 0.650, "latency_ms": 0.5}, False, "dropped: INT8 loses 0.023 mAP50_95"),
])
def test_int8_is_kept_only_when_faster_and_within_the_budget(int8, keep, words):
    verdict = int8_verdict({"mAP50_95": 0.673, "latency_ms": 0.8}, int8, "mAP50_95", max_drop=0.01)
    assert verdict["keep"] is keep and verdict["reason"].startswith(words)


def _metrics(tmp_path, fmt, value, ms):
    path = tmp_path / f"{fmt}.json"
    path.write_text(json.dumps({"stage": "pruned_finetuned", "task": "detection", "format": fmt, "fitness": value,
                                "metrics": {"mAP50_95": value}, "params": 1e5, "flops": 1e8, "file_bytes": 1e5,
                                "latency_ms": {"median": ms, "p90": ms}}))
    return path


@pytest.mark.parametrize("max_drop, line", [
    (None, None),
    (0.01, "- pruned_finetuned (export.int8: auto): dropped: INT8 is not faster, 0.94x its FP32's speed"),
])
def test_summary_says_why_int8_was_dropped_with_auto(tmp_path, max_drop, line):
    table = summary_table([_metrics(tmp_path, "onnx_fp32", 0.673, 0.835), _metrics(tmp_path, "onnx_int8", 0.674, 0.888)])
    write_summary(table, tmp_path / "summary.csv", tmp_path / "summary.md", metric="mAP50_95", int8_max_drop=max_drop)
    text = (tmp_path / "summary.md").read_text()
    assert ("(export.int8: auto)" in text) is (line is not None)
    assert line is None or line in text


@pytest.mark.parametrize("int8, expected", [(True, None), ("auto", 0.02)])
def test_the_report_step_gets_the_budget_only_with_auto(tmp_path, int8, expected):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"export:\n  int8: {str(int8).lower()}\n  int8_max_drop: 0.02\n")
    config = load_config(config_file)
    assert step_args("report", Results("results"), config)["int8_max_drop"] == expected


def test_auto_judges_speed_at_the_deployment_geometry(tmp_path):
    """Slower than FP32 at the trained 128 px, faster at 640 px: the verdict is 640's (the largest
    size of export.deploy, 1 thread), and it names that geometry."""
    paths = []
    for fmt, ms, ms640 in [("onnx_fp32", 0.835, 22.1), ("onnx_int8", 0.888, 14.0)]:
        path = _metrics(tmp_path, fmt, 0.673, ms)
        record = json.loads(path.read_text())
        record["latency"] = [{"imgsz": size, "threads": threads, "batch": 1, "median": median, "p90": median, "runs": 50}
                             for size, threads, median in [(128, 1, ms), (640, 1, ms640), (640, 2, ms640 / 1.9)]]
        path.write_text(json.dumps(record))
        paths.append(path)
    write_summary(summary_table(paths), tmp_path / "summary.csv", tmp_path / "summary.md", metric="mAP50_95",
                  int8_max_drop=0.01)
    assert "kept: INT8 runs 1.58x its FP32's speed (14 ms against 22.1 ms at 640 px 1 thr b1)" in \
        (tmp_path / "summary.md").read_text()
