"""The seed's workflow end to end: a user's YOLOv5 best.pt -> import-weights -> sparse -> prune -> finetune -> export."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, run_snakemake, write_config
from yolov5_checkpoints import save_yolov5, yolov5_model

pytestmark = pytest.mark.e2e  # runs the real snakemake and the CLI


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "pipeline_lib", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _tiny(tmp_path, weights):
    one = {"epochs": 1}
    return write_config(tmp_path / "config.yaml", model={"weights": str(weights)},
                        train={"epochs": 1, "warmup_epochs": 0}, stages={"sparse": {"sr": 0.01, **one}, "finetune": one})


def test_yolov5_checkpoint_through_import_sparse_prune_finetune_export(tmp_path):
    best = save_yolov5(tmp_path / "best.pt", yolov5_model(seed=0))  # FP16, 80 classes, as YOLOv5 saves it
    proc = _cli("import-weights", str(best), str(tmp_path / "yolov5n_slimflow.pt"), "--task", "detection",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Transferred 349/349 items" in proc.stderr
    assert torch.load(tmp_path / "yolov5n_slimflow.pt", weights_only=True)["arch"]["name"] == "yolov5n"

    run = tmp_path / "run"
    run.mkdir()
    run_snakemake(run, _tiny(tmp_path, tmp_path / "yolov5n_slimflow.pt"), "results/export/pruned_finetuned.onnx")
    log = (run / "results/logs/train-baseline.log").read_text()
    assert "Transferred 343/349 items" in log  # 80 classes in the file, 5 in the embedded data: heads fresh
    baseline = torch.load(run / "results/baseline.pt", weights_only=True)
    assert baseline["arch"]["kwargs"]["nc"] == 5 and baseline["arch"]["kwargs"]["act"] == "silu"
    assert baseline["meta"]["parent"] is not None  # the weights' hash keys the run: a new file retrains
    report = json.loads((run / "results/prune.json").read_text())
    assert report["after"]["flops"] < report["before"]["flops"]
    export = json.loads((run / "results/export/pruned_finetuned.json").read_text())
    assert (run / "results/export/pruned_finetuned.onnx").stat().st_size > 0 and export


def test_a_checkpoint_that_would_run_code_stops_the_run_before_any_job(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "best.pt"
    torch.save({"model": yolov5_model(seed=0), "ema": None, "opt": Payload()}, evil)
    run = tmp_path / "run"
    run.mkdir()
    proc = run_snakemake(run, _tiny(tmp_path, evil), check=False)
    assert proc.returncode != 0
    assert f"{evil}: refused: its pickle names posix.system" in proc.stdout + proc.stderr
    assert not marker.exists() and not (run / "results/baseline.pt").exists()
