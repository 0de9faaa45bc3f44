"""Same config and seed on CPU -> identical weights and metrics, whatever the worker count."""
import pytest
import torch

from pipeline_lib.config import defaults, stage_config
from pipeline_lib.steps import evaluate_stage, prepare_dataset, train_stage
from pipeline_lib.tasks import validation_settings

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training


def _run(root, workers):
    cfg = defaults()
    cfg["dataset"]["synthetic"].update(n_train=16, n_val=4, imgsz=64)
    cfg["model"]["imgsz"] = 64
    cfg["train"].update(epochs=2, batch_size=8, nominal_batch_size=8, workers=workers, warmup_epochs=1)
    manifest = root / "data" / "dataset.json"
    prepare_dataset(dataset_cfg=cfg["dataset"], family="detection", seed=5, manifest_path=manifest)
    train_stage(label="baseline", train_cfg=stage_config(cfg, "baseline"), model_cfg=cfg["model"], family="detection",
                validation=validation_settings(cfg), seed=5, device="cpu", manifest_path=manifest,
                out_checkpoint=root / "baseline.pt", out_csv=root / "baseline.csv", workdir=root / "work")
    metrics = evaluate_stage(label="baseline", checkpoint=root / "baseline.pt", manifest_path=manifest,
                             eval_cfg=cfg["evaluate"], device="cpu", seed=5, out_metrics=root / "m.json")
    return torch.load(root / "baseline.pt", weights_only=True)["state_dict"], metrics["metrics"], (root / "baseline.csv").read_text()


def test_two_runs_are_bitwise_identical_with_and_without_workers(tmp_path):
    state_a, metrics_a, csv_a = _run(tmp_path / "a", workers=0)
    state_b, metrics_b, csv_b = _run(tmp_path / "b", workers=2)
    assert metrics_a == metrics_b
    assert [line.rsplit(",", 1)[0] for line in csv_a.splitlines()] == [line.rsplit(",", 1)[0] for line in csv_b.splitlines()]  # all but time_s
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
