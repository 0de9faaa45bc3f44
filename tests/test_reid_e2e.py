"""The tiny ReID config through the real snakemake: prepare -> baseline -> sparse -> prune -> finetune."""
import json

import pytest
import torch

from pipeline_lib.io import sha256_file

from conftest import REPO, run_snakemake, write_config

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

STAGES = ("baseline", "pruned", "pruned_finetuned")


@pytest.fixture(scope="module")
def reid_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reid")
    run_snakemake(workdir, REPO / "config" / "test_reid.yaml", "results/pruned_finetuned.pt",
                  *(f"results/metrics/{s}.json" for s in STAGES))
    return workdir


def test_dataset_is_written_and_indexed_in_market_layout(reid_run):
    manifest = json.loads((reid_run / "results/data/dataset.json").read_text())
    assert manifest["task"] == "reid" and manifest["nc"] == 8
    market = reid_run / "results/data/market"
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        assert any((market / folder).glob("*_c*s*_*_*.jpg"))
    assert manifest["counts"]["query"]["ids"] == 6


def test_metrics_follow_the_reid_contract(reid_run):
    for stage in STAGES:
        result = json.loads((reid_run / f"results/metrics/{stage}.json").read_text())
        assert result["task"] == "reid" and set(result["metrics"]) == {"mAP", "rank1", "rank5", "rank10"}
        assert result["fitness"] == result["metrics"]["mAP"]
        assert 0 < result["metrics"]["mAP"] <= result["metrics"]["rank10"] + 1e-9 <= 1 + 1e-9
    predictions = json.loads((reid_run / "results/metrics/baseline.predictions.json").read_text())
    assert len(predictions[0]["ranked"]) == 10 and predictions[0]["query"].endswith(".jpg")


def test_chain_prunes_through_the_generic_slimming_code(reid_run):
    metrics = {s: json.loads((reid_run / f"results/metrics/{s}.json").read_text()) for s in STAGES}
    assert metrics["pruned"]["flops"] < 0.7 * metrics["baseline"]["flops"]
    assert metrics["pruned_finetuned"]["params"] == metrics["pruned"]["params"]
    report = json.loads((reid_run / "results/prune.json").read_text())
    assert report["layers"]["bnneck"]["after"] == report["layers"]["bnneck"]["before"] == 512
    ckpt = torch.load(reid_run / "results/pruned_finetuned.pt", weights_only=True)
    assert ckpt["arch"]["family"] == "reid" and ckpt["meta"]["imgsz"] == [32, 16]
    assert ckpt["meta"]["parent"] == sha256_file(reid_run / "results/pruned.pt")
    assert ckpt["state_dict"]["classifier.weight"].shape == (8, 512)
    history = (reid_run / "results/train/baseline.csv").read_text().splitlines()
    assert "train/triplet" in history[0] and "metrics/mAP" in history[0]


def test_reid_backbone_name_is_checked(tmp_path):
    config = write_config(tmp_path / "c.yaml", base="test_reid.yaml", model={"name": "yolov5n", "imgsz": 32})
    proc = run_snakemake(tmp_path, config, "results/baseline.pt", check=False)
    assert proc.returncode != 0
    # Snakemake's notice of the default profile is the one other line; the file is named as seen
    # from the run's folder (--directory).
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and not line.startswith("Using workflow specific profile")]
    assert len(lines) == 1 and lines[0].startswith(f"slimflow config error: {config.relative_to(tmp_path)}:")
    assert "model.name: 'yolov5n' is not one of ['resnet18', 'resnet34', 'resnet50', 'resnet101']" in lines[0]
    assert not (tmp_path / "results").exists()  # stopped before any job
