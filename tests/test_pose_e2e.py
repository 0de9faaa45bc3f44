"""The tiny pose config through the real snakemake: the whole chain, export and INT8 included."""
import json

import onnx
import pytest
import torch

from pipeline_lib.io import sha256_file

from conftest import chain_run, run_snakemake, write_config

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

STAGES = ("baseline", "sparse", "pruned", "pruned_finetuned")


@pytest.fixture(scope="module")
def pose_run(tmp_path_factory):
    # The files the tests read, not the default target: the baseline's export, the PyTorch latencies
    # and the report (family-independent steps, run end to end by the detection and diffusion chains)
    # would be five more jobs here, a third of the chain.
    return chain_run(tmp_path_factory, "test_pose.yaml", *(f"results/metrics/{s}.json" for s in STAGES),
                     "results/metrics/onnx_fp32.json", "results/metrics/onnx_int8.json")


def test_dataset_is_written_in_coco_keypoints_layout(pose_run):
    manifest = json.loads((pose_run / "results/data/dataset.json").read_text())
    assert manifest["task"] == "pose" and len(manifest["names"]) == 17 and len(manifest["flip_pairs"]) == 8
    root = pose_run / "results/data/pose"
    for split in ("train", "val"):
        coco = json.loads((root / "annotations" / f"person_keypoints_{split}.json").read_text())
        assert coco["categories"][0]["keypoints"] == manifest["names"]
        assert len(list((root / "images" / split).glob("*.jpg"))) == len(coco["images"])


def test_metrics_follow_the_pose_contract(pose_run):
    for stage in STAGES:
        result = json.loads((pose_run / f"results/metrics/{stage}.json").read_text())
        assert result["task"] == "pose" and list(result["metrics"]) == ["AP", "AP50", "AP75", "AR"]
        assert result["fitness"] == result["metrics"]["AP"] and result["imgsz"] == [64, 32]
    for name in ("onnx_fp32", "onnx_int8"):
        assert set(json.loads((pose_run / f"results/metrics/{name}.json").read_text())["metrics"]) == {"AP", "AP50", "AP75", "AR"}


def test_chain_prunes_hrnet_and_keeps_the_heatmap_head(pose_run):
    metrics = {s: json.loads((pose_run / f"results/metrics/{s}.json").read_text()) for s in STAGES}
    assert metrics["pruned"]["flops"] < metrics["baseline"]["flops"]
    assert metrics["pruned_finetuned"]["params"] == metrics["pruned"]["params"]
    ckpt = torch.load(pose_run / "results/pruned_finetuned.pt", weights_only=True)
    assert ckpt["arch"]["family"] == "pose" and ckpt["state_dict"]["final_layer.weight"].shape[0] == 17
    assert ckpt["meta"]["parent"] == sha256_file(pose_run / "results/pruned.pt")
    proto = onnx.load(str(pose_run / "results/export/pruned_finetuned.onnx"))
    assert [o.name for o in proto.graph.output] == ["heatmaps"]
    history = (pose_run / "results/train/baseline.csv").read_text().splitlines()
    assert "train/heatmap" in history[0] and "metrics/AP" in history[0]


@pytest.mark.parametrize("base, name, allowed", [
    ("test_pose.yaml", "resnet18", "['hrnet_small', 'hrnet_w32', 'hrnet_w48']"),
    ("test_reid.yaml", "yolov5n", "['resnet18', 'resnet34', 'resnet50', 'resnet101']"),
])
def test_a_family_checks_its_architecture_name(tmp_path, base, name, allowed):
    config = write_config(tmp_path / "c.yaml", base=base, model={"name": name})
    proc = run_snakemake(tmp_path, config, "results/baseline.pt", check=False)
    assert proc.returncode != 0
    # Snakemake's notice of the default profile (profiles/default) is the one other line; the file
    # is named as seen from the run's folder (--directory).
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and not line.startswith("Using workflow specific profile")]
    assert len(lines) == 1 and lines[0].startswith(f"slimflow config error: {config.relative_to(tmp_path)}:")
    assert f"model.name: '{name}' is not one of {allowed}" in lines[0]
    assert not (tmp_path / "results").exists()  # stopped before any job
