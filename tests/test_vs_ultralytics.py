"""benchmarks/vs_ultralytics.py on a tiny digits dataset: slimflow's side always, ultralytics' where
SLIMFLOW_ULTRALYTICS_PYTHON names an interpreter with ultralytics (docs/BENCHMARKS.md builds one)."""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO

ULTRALYTICS = os.environ.get("SLIMFLOW_ULTRALYTICS_PYTHON")
NO_ULTRALYTICS = ("SLIMFLOW_ULTRALYTICS_PYTHON is not set: the ultralytics side needs an interpreter with "
                  "ultralytics (docs/BENCHMARKS.md, 'Detector against ultralytics YOLOv5n', builds one)")


def script(*args, env_extra=None, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "SLIMFLOW_ULTRALYTICS_PYTHON"}
    env.update({"PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE", **(env_extra or {})})
    return subprocess.run([sys.executable, str(REPO / "benchmarks/vs_ultralytics.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/digits_dataset.py"), out, "--n-train", "16",
                           "--n-val", "8", "--imgsz", "64"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out / "data.yaml"


@pytest.fixture(scope="module")
def benchmark(tiny_digits, tmp_path_factory):
    """One run of the script on config/test.yaml, its baseline 1 epoch at 64 px, then --chain: both
    sides where ultralytics is available, else slimflow's. One run serves the side-by-side tests and
    the chain's (the chain continues the benchmarked baseline: a second run would train it again)."""
    out = tmp_path_factory.mktemp("vs") / "out"
    sides = ["slimflow", "ultralytics"] if ULTRALYTICS else ["slimflow"]
    proc = script(tiny_digits, "--out", out, "--configfile", REPO / "config/test.yaml", "--epochs", 1, "--imgsz", 64,
                  "--batch", 8, "--sides", *sides, "--chain",
                  *(["--ultralytics-python", ULTRALYTICS] if ULTRALYTICS else []))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text()), proc.stdout


@pytest.mark.e2e
def test_slimflow_side_trains_through_snakemake_and_reports_a_finite_map(benchmark):
    out, results, printed = benchmark
    ours = results["sides"]["slimflow"]
    assert all(math.isfinite(ours["metrics"][k]) and 0 <= ours["metrics"][k] <= 1 for k in ("mAP50_95", "mAP50"))
    assert ours["img_per_s"] > 0 and ours["wall_s"] > ours["train_s"] > 0 and ours["params"] > 0
    assert len(ours["epoch_s"]) == 1 and results["imgsz"] == 64 and results["batch"] == 8
    row = next(line for line in printed.splitlines() if line.startswith("| slimflow yolov5n"))
    assert float(row.split("|")[2]) == pytest.approx(ours["metrics"]["mAP50_95"], abs=5e-4)
    assert (out / "table.md").read_text() in printed
    # the workflow trained on the given data.yaml with the benchmark's settings laid over the config
    # (config/test.yaml trains 2 baseline epochs on its synthetic images: 1 epoch above is the overlay's)
    metrics = json.loads((out / "slimflow/results/metrics/baseline.json").read_text())
    assert metrics["imgsz"] == 64 and metrics["metrics"]["mAP50_95"] == ours["metrics"]["mAP50_95"]
    manifest = json.loads((out / "slimflow/results/data/dataset.json").read_text())
    assert manifest["data_yaml"] == str(results["data"]) and manifest["counts"]["train"]["images"] == 16


@pytest.mark.e2e
@pytest.mark.skipif(not ULTRALYTICS, reason=NO_ULTRALYTICS)
def test_ultralytics_side_is_scored_by_the_same_cocoeval_on_the_same_ground_truth(benchmark):
    out, results, printed = benchmark
    theirs = results["sides"]["ultralytics"]
    assert all(math.isfinite(theirs["metrics"][k]) and 0 <= theirs["metrics"][k] <= 1 for k in ("mAP50_95", "mAP50"))
    assert theirs["img_per_s"] > 0 and len(theirs["epoch_s"]) == 1 and theirs["images_predicted"] == 8
    assert theirs["settings"]["imgsz"] == 64 and theirs["settings"]["batch"] == 8 and not theirs["settings"]["amp"]
    assert theirs["versions"]["threads"] == results["threads"]  # ultralytics alone would take one core fewer
    gt = json.loads((out / "slimflow/results/data/val_coco.json").read_text())
    predictions = json.loads((out / "ultralytics/predictions.json").read_text())
    assert predictions and {p["image_id"] for p in predictions} <= {im["id"] for im in gt["images"]}
    assert (out / "ultralytics/config/Ultralytics/settings.json").is_file()  # not the user's settings
    assert any(line.startswith("| ultralytics ") for line in printed.splitlines())
    assert "ultralytics' own validation of the same weights" in printed  # its own figure, for reference


@pytest.mark.e2e
def test_chain_runs_the_whole_workflow_on_the_data_and_reports_each_artifact_against_the_reference(benchmark):
    out, results, printed = benchmark
    chain = results["sides"]["slimflow"]["chain"]
    rows = {r["artifact"]: r for r in chain["rows"]}
    summary = (out / "slimflow/results/summary.csv").read_text()
    assert {"baseline", "sparse", "pruned_finetuned", "pruned_finetuned [onnx_int8]"} <= set(rows) and chain["wall_s"] > 0
    assert rows["pruned_finetuned"]["flops_vs_baseline"] < 1 and f"{rows['pruned_finetuned']['mAP50_95']}" in summary
    reference = [name for name, r in rows.items() if r["vs_reference"] == 0 and name in ("baseline", "sparse")]
    assert reference and f"accuracy reference: {reference[0]}" in printed
    line = next(x for x in printed.splitlines() if x.startswith("| pruned_finetuned |"))
    delta = 100 * (rows["pruned_finetuned"]["mAP50_95"] - rows[reference[0]]["mAP50_95"])
    assert float(line.split("|")[3]) == pytest.approx(delta, abs=0.051)


def test_chain_without_slimflows_side_is_one_line(tiny_digits, tmp_path):
    proc = script(tiny_digits, "--out", tmp_path / "out", "--sides", "ultralytics", "--chain")
    assert proc.returncode == 1 and proc.stderr.strip() == ("slimflow error: --chain runs the rest of slimflow's "
                                                            "chain after its baseline: add slimflow to --sides")


def test_a_missing_data_yaml_is_one_line_naming_it(tmp_path):
    proc = script(tmp_path / "nope/data.yaml", "--out", tmp_path / "out", "--sides", "slimflow")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("slimflow error: ") and "nope/data.yaml: no such data.yaml" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", [None, "/nonexistent/bin/python", sys.executable])
def test_no_usable_ultralytics_interpreter_is_one_line_saying_how_to_build_one(tiny_digits, tmp_path, given):
    proc = script(tiny_digits, "--out", tmp_path / "out", *(["--ultralytics-python", given] if given else []))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("slimflow error: ")
    assert "pip install ultralytics" in proc.stderr and not (tmp_path / "out").exists()
