"""Pose evaluation: the reported OKS AP is COCOeval's on the written results; detections, sigmas, OKS NMS."""
import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from pipeline_lib.errors import UserError
from pipeline_lib.io import read_json, write_json
from pipeline_lib.tasks.pose.task import TASK
from pipeline_lib.tasks.pose.evaluate import COCO_SIGMAS, oks_nms
from pipeline_lib.tasks.pose.heatmaps import gaussian_targets
from pipeline_lib.tasks.pose.transforms import invert_affine

SYN = {"path": None, "synthetic": {"n_train": 4, "n_val": 12, "imgsz": 96, "difficulty": 0.3}}
SIZE = [128, 96]  # heatmaps of 32 x 24: decoding the ground truth is exact enough for AP 1


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return TASK.prepare_dataset(SYN, tmp_path_factory.mktemp("pose_eval"), seed=0)


class Oracle(nn.Module):
    """Heatmaps of the ground truth (plus noise) for the crops of a val loader, batch by batch, in order."""

    def __init__(self, manifest, loader, noise: float):
        super().__init__()
        rng = np.random.default_rng(0)
        maps = []
        for batch in loader:
            for inverse, index in zip(batch["inverse"].numpy(), batch["index"].tolist()):
                kps = np.asarray(loader.dataset.items[index]["keypoints"]).reshape(-1, 3)
                forward = invert_affine(inverse)  # image -> heatmap
                joints = kps[:, :2] @ forward[:, :2].T + forward[:, 2] + rng.normal(0, noise, (len(kps), 2))
                maps.append(gaussian_targets(torch.from_numpy(joints)[None], torch.from_numpy(kps[:, 2])[None],
                                             (SIZE[0] // 4, SIZE[1] // 4))[0][0])
        self.maps, self.next = torch.stack(maps), 0

    def forward(self, images):
        out = self.maps[self.next: self.next + len(images)]
        self.next += len(images)
        return out


def _cocoeval(gt_path, results_path, sigmas):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(results_path)), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


@pytest.mark.parametrize("noise", [0.0, 0.6])
def test_reported_ap_is_cocoeval_on_the_written_results(manifest, tmp_path, noise):
    loader = TASK.loader(manifest, "val", train=False, imgsz=SIZE, batch_size=5, workers=0, seed=0)
    model = Oracle(manifest, loader, noise)
    metrics = TASK.evaluate(model, loader, torch.device("cpu"), {"flip_test": False}, manifest, tmp_path / "pred.json")
    assert list(metrics) == list(TASK.metric_keys) == ["AP", "AP50", "AP75", "AR"]
    stats = _cocoeval(manifest["coco_gt"]["val"], tmp_path / "pred.json", COCO_SIGMAS)
    assert [metrics[k] for k in TASK.metric_keys] == pytest.approx([stats[0], stats[1], stats[2], stats[5]], abs=1e-12)
    if noise == 0:  # decoding the ground truth's own targets: near-perfect
        assert metrics["AP"] > 0.99
    else:
        assert 0.1 < metrics["AP"] < 0.9
    assert TASK.fitness(metrics) == metrics["AP"]
    results = read_json(tmp_path / "pred.json")
    assert {"image_id", "category_id", "keypoints", "score"} <= set(results[0]) and len(results[0]["keypoints"]) == 51


def test_flip_test_and_custom_sigmas_go_through_cocoeval(manifest, tmp_path):
    torch.manual_seed(0)
    model = TASK.build_model(TASK.arch({"name": "hrnet_small", "imgsz": SIZE, "width": 8, "stem": 8}, manifest)).eval()
    loader = TASK.loader(manifest, "val", train=False, imgsz=SIZE, batch_size=8, workers=0, seed=0)
    sigmas = [0.1] * 17
    metrics = TASK.evaluate(model, loader, torch.device("cpu"), {"flip_test": True, "sigmas": sigmas}, manifest,
                            tmp_path / "pred.json")
    stats = _cocoeval(manifest["coco_gt"]["val"], tmp_path / "pred.json", sigmas)
    assert metrics["AP"] == pytest.approx(max(stats[0], 0.0), abs=1e-12)
    with pytest.raises(UserError, match=r"^evaluate\.sigmas: 3 values for the 17 keypoints of .*person_keypoints_val"):
        TASK.evaluate(model, loader, torch.device("cpu"), {"sigmas": [0.1] * 3}, manifest)


def test_detections_replace_the_ground_truth_boxes(manifest, tmp_path):
    gt = read_json(manifest["coco_gt"]["val"])
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"] if a["num_keypoints"] > 0]
    write_json(tmp_path / "dets.json", dets)
    loader = TASK.loader(manifest, "val", train=False, imgsz=SIZE, batch_size=5, workers=0, seed=0)
    with_gt = TASK.evaluate(Oracle(manifest, loader, 0.0), loader, torch.device("cpu"), {"flip_test": False}, manifest)
    with_dets = TASK.evaluate(Oracle(manifest, loader, 0.0), loader, torch.device("cpu"),
                              {"flip_test": False, "detections": str(tmp_path / "dets.json")}, manifest)
    assert with_dets == pytest.approx(with_gt)  # the same boxes in the same order: the same predictions
    write_json(tmp_path / "bad.json", [{"image_id": 12345, "bbox": [0, 0, 5, 5], "score": 1.0}])
    with pytest.raises(UserError, match=r"^evaluate\.detections: .*bad\.json: entry 0: image_id 12345 is not a val image"):
        TASK.evaluate(Oracle(manifest, loader, 0.0), loader, torch.device("cpu"),
                      {"detections": str(tmp_path / "bad.json")}, manifest)


def test_oks_nms_drops_near_duplicates_only():
    base = np.stack([np.linspace(10, 60, 17), np.linspace(5, 90, 17), np.ones(17)], 1)
    people = [{"keypoints": base, "score": 0.9, "area": 2000.0},
              {"keypoints": base + [0.2, 0.2, 0], "score": 0.8, "area": 2000.0},  # the same person again
              {"keypoints": base + [25, 0, 0], "score": 0.7, "area": 2000.0}]      # someone beside them
    kept = oks_nms(people, 0.9, np.asarray(COCO_SIGMAS))
    assert [p["score"] for p in kept] == [0.9, 0.7]
