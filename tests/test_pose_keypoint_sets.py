"""A keypoint set other than COCO's 17 through the real snakemake: five custom-named landmarks
with their own skeleton and `evaluate.sigmas`, trained, pruned, finetuned and evaluated (training's
per-epoch validation reads the user's sigmas: commit 0ac392d)."""
import json

import pytest
import torch

from conftest import one_error_line, run_snakemake, snapshot, write_config
from pose_landmarks import FLIP_PAIRS, LANDMARKS, SIGMAS, write_landmark_dataset

pytestmark = pytest.mark.e2e  # runs the real snakemake

K = len(LANDMARKS)


@pytest.fixture(scope="module")
def landmark_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("landmarks")
    root = write_landmark_dataset(workdir / "landmarks")
    config = write_config(workdir / "config.yaml", base="test_pose.yaml", dataset={"path": str(root)},
                          evaluate={"sigmas": SIGMAS})
    run_snakemake(workdir, config, "results/metrics/pruned_finetuned.json")
    return workdir, config


def test_chain_trains_and_scores_the_landmarks(landmark_run):
    workdir, _ = landmark_run
    manifest = json.loads((workdir / "results/data/dataset.json").read_text())
    assert manifest["names"] == list(LANDMARKS) and manifest["flip_pairs"] == FLIP_PAIRS
    assert manifest["skeleton"] == [[1, 2], [1, 3], [1, 4], [1, 5]]
    result = json.loads((workdir / "results/metrics/pruned_finetuned.json").read_text())
    assert list(result["metrics"]) == ["AP", "AP50", "AP75", "AR"] and 0 <= result["metrics"]["AP"] <= 1
    for stage in ("baseline", "pruned_finetuned"):
        ckpt = torch.load(workdir / f"results/{stage}.pt", weights_only=True)
        assert ckpt["arch"]["kwargs"]["num_joints"] == K
        assert ckpt["state_dict"]["final_layer.weight"].shape[0] == K  # one heatmap per landmark
    history = (workdir / "results/train/baseline.csv").read_text().splitlines()
    assert "metrics/AP" in history[0] and len(history) == 3  # validated every epoch with the user's sigmas


def test_sigmas_for_coco_are_refused_before_any_job(landmark_run, tmp_path):
    """Left at COCO's 17 (the default), the sigmas do not fit the landmarks: one line, results kept."""
    workdir, config = landmark_run
    before = snapshot(workdir / "results")
    bad = write_config(tmp_path / "bad.yaml", base="test_pose.yaml", dataset={"path": str(workdir / "landmarks")})
    line = one_error_line(run_snakemake(workdir, bad, "results/metrics/pruned_finetuned.json", check=False))
    assert line.startswith("slimflow error: evaluate.sigmas: 17 values for the 5 keypoints of ")
    assert "person_keypoints_train.json" in line
    assert snapshot(workdir / "results") == before
