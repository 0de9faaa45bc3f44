"""Deployment geometry (export.deploy, prune.target's imgsz/threads): the detector exports with dynamic
height and width and matches PyTorch at two sizes; every exported model of the tiny run is timed at
every geometry; the summary names the geometry in its column heads; a timed target's probes carry it."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch

from pipeline_lib.config import load_config
from pipeline_lib.export.geometry import geometries, geometry_label, target_geometry
from pipeline_lib.export.onnx_export import check_parity, export_onnx
from pipeline_lib.steps.chain import _target_timer
from pipeline_lib.tasks import load_model
from pipeline_lib.tasks.detection.model import YOLODetector

from conftest import REPO, randomize_bn

CORES = os.cpu_count() or 1


def test_geometries_start_at_the_reference_and_count_all_cores():
    found = geometries({"imgsz": None, "threads": [1, "all"], "batch": [1, 4]}, trained=128, extra_sizes=(640,),
                       dynamic=32, threads=1)
    assert found[0] == {"imgsz": 128, "threads": 1, "batch": 1}  # DESIGN's latency_ms
    assert {(g["imgsz"], g["threads"], g["batch"]) for g in found} == {
        (s, t, b) for s in (128, 640) for t in {1, CORES} for b in (1, 4)}
    assert len(found) == len({json.dumps(g, sort_keys=True) for g in found})  # each once
    # a graph fixed at its trained size is timed there only, whatever sizes are asked
    fixed = geometries({"imgsz": [320, 640], "threads": [2], "batch": [1]}, trained=(256, 128), extra_sizes=(),
                       dynamic=0, threads=1)
    assert [g["imgsz"] for g in fixed] == [(256, 128), (256, 128)] and [g["threads"] for g in fixed] == [1, 2]
    assert geometry_label({"imgsz": 640, "threads": 1, "batch": 1}) == "640 px 1 thr b1"


def test_a_timed_target_defaults_to_the_largest_deployment_size():
    detector = {"trained": 128, "extra_sizes": (640,), "dynamic": 32, "threads": 1}
    assert target_geometry({"speedup": 2}, None, **detector) == {"imgsz": 640, "threads": 1, "batch": 1,
                                                                 "precision": "fp32"}
    assert target_geometry({"speedup": 2, "imgsz": 320, "threads": "all"}, None, **detector) == {
        "imgsz": 320, "threads": CORES, "batch": 1, "precision": "fp32"}
    assert target_geometry({"latency_ms": 1}, [64, 256], **detector)["imgsz"] == 256


def test_the_detector_exports_dynamic_height_and_width_and_matches_pytorch_at_two_sizes(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(YOLODetector(3, "n")).eval()
    sizes = {f"{s} px": torch.rand(1, 3, s, s) for s in (64, 160)}
    export_onnx(model, torch.rand(1, 3, 64, 64), tmp_path / "dynamic.onnx", output_names=["detections"], dynamic=32)
    report = check_parity(model, tmp_path / "dynamic.onnx", sizes, tol=1e-4, rtol=1e-5)
    assert {k: v["shape"][2:] for k, v in report["inputs"].items()} == {"64 px": [64, 64], "160 px": [160, 160]}
    # the decode's grids follow the input: 3 anchors x (8² + 4² + 2²) cells at 64 px, (20² + 10² + 5²) at 160
    with torch.no_grad():
        assert [model(x).shape[1] for x in sizes.values()] == [3 * 84, 3 * 525]
    export_onnx(model, torch.rand(1, 3, 64, 64), tmp_path / "fixed.onnx", output_names=["detections"])
    with pytest.raises(Exception):  # what dynamic=32 changes: a fixed graph refuses another size
        check_parity(model, tmp_path / "fixed.onnx", {"160 px": sizes["160 px"]}, tol=1e-4, rtol=1e-5)


@pytest.mark.e2e  # the tiny run's sparse checkpoint, and two real exports
def test_a_timed_target_is_measured_at_its_geometry_and_records_it(tiny_run):
    loaded = load_model(tiny_run / "results/sparse.pt")
    prune_cfg = {"target": {"speedup": 1.5, "imgsz": 32, "runs": 10}, "threads": 1, "deploy_imgsz": None}
    timer = _target_timer(loaded, prune_cfg)
    assert timer.keywords["example"].shape == (1, 3, 32, 32)  # candidates exported and timed at 32 px
    assert timer.keywords["geometry"] == {"imgsz": 32, "threads": 1, "batch": 1, "precision": "fp32"}
    timed = timer(loaded.model)(loaded.model)
    assert timed["geometry"]["imgsz"] == 32 and timed["latency_ms"] > 0


@pytest.mark.e2e  # reads the tiny run (snakemake)
def test_every_exported_model_is_timed_at_every_geometry_and_the_summary_names_it(tiny_run):
    cfg = load_config(REPO / "config/test.yaml")
    expected = geometries(cfg["export"]["deploy"], trained=cfg["model"]["imgsz"], extra_sizes=(640,), dynamic=32,
                          threads=cfg["export"]["threads"])
    assert len(expected) >= 2  # the tiny config times 64 and 32 px
    for name in ("baseline.onnx_fp32", "onnx_fp32", "onnx_int8"):
        metrics = json.loads((tiny_run / f"results/metrics/{name}.json").read_text())
        records = metrics["latency"]
        assert [{k: r[k] for k in ("imgsz", "threads", "batch")} for r in records] == expected, name
        assert all(r["median"] > 0 and r["p90"] >= r["median"] and r["runs"] == cfg["export"]["latency_runs"]
                   for r in records)
        reference = {k: records[0][k] for k in ("median", "p90", "runs", "threads", "batch")}
        assert metrics["latency_ms"] == reference  # DESIGN's key: the trained size, export.threads, batch 1
    table = pd.read_csv(tiny_run / "results/summary.csv")
    for g in expected:
        for head in (f"ORT ms {geometry_label(g)}", f"speedup {geometry_label(g)}"):
            assert head in table.columns
    onnx = table[table["stage"].str.contains("onnx")]
    assert onnx[f"ORT ms {geometry_label(expected[1])}"].notna().all()
    assert (table.loc[table["stage"] == "baseline [onnx_fp32]", f"speedup {geometry_label(expected[1])}"] == 1).all()
    summary = (tiny_run / "results/summary.md").read_text()
    section = summary.split("## Latency per deployment geometry")[1].split("\n## ")[0]
    assert all(f"ORT ms {geometry_label(g)}" in section for g in expected)
    assert "## All metrics" in summary and "ORT ms" not in summary.split("## All metrics")[1].split("\n## ")[0]
