"""The tiny ReID config through the real snakemake: prepare -> baseline -> sparse -> prune -> finetune."""
import json

import pytest
import torch

from pipeline_lib.io import sha256_file

from conftest import chain_run

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

STAGES = ("baseline", "pruned", "pruned_finetuned")


@pytest.fixture(scope="module")
def reid_run(tmp_path_factory):
    return chain_run(tmp_path_factory, "test_reid.yaml", "results/pruned_finetuned.pt",
                     *(f"results/metrics/{s}.json" for s in STAGES))


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
