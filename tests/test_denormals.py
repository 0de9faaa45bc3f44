"""Denormal weights: export zeroes them (count in the report, parity kept), and the latency step's
check flags a model that still runs denormal arithmetic (by counting subnormal values, not by time)."""
import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from pipeline_lib.checkpoint import save_checkpoint
from pipeline_lib.config import defaults
from pipeline_lib.export import check_parity, denormal_check, export_onnx, subnormal_count, zero_tiny_weights
from pipeline_lib.io import read_json, write_json
from pipeline_lib.steps import evaluate_onnx_stage, export_stage
from pipeline_lib.tasks import get_task

TASK = get_task("detection")
ANCHORS = [[4, 5, 8, 10, 12, 8], [10, 20, 20, 15, 19, 40], [38, 30, 50, 65, 60, 60]]
CFG = {**defaults()["export"], "latency_runs": 10, "latency_warmup": 1}


def _relu_net_with_dead_channels() -> nn.Module:
    """Conv+ReLU layers whose first half of output channels hold weights near 1e-40 and no bias:
    what weight decay leaves in channels a ReLU never opens (their activations are subnormal too)."""
    torch.manual_seed(0)
    layers, width = [], 3
    for out in (16, 16, 8):
        layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU()]
        width = out
    model = nn.Sequential(*layers).eval()
    with torch.no_grad():
        for conv in model[2::2]:
            dead = conv.out_channels // 2
            conv.weight[:dead] = torch.randn_like(conv.weight[:dead]) * 1e-39
            conv.bias[:dead] = 0
    return model


def _subnormal_weights(path) -> int:
    return sum(subnormal_count(numpy_helper.to_array(t)) for t in onnx.load(str(path)).graph.initializer)


def test_tiny_weights_are_zeroed_with_outputs_unchanged_and_the_check_flags_only_the_unfixed_model(tmp_path):
    model, x = _relu_net_with_dead_channels(), torch.rand(1, 3, 32, 32)
    path = tmp_path / "model.onnx"
    export_onnx(model, x, path)
    before = _subnormal_weights(path)
    assert before == (8 + 4) * 16 * 9  # half the output channels of the 16- and 8-channel convs, 16×3×3 each
    unfixed = denormal_check(path, x, threads=1, runs=4)
    assert unfixed["denormal_arithmetic"] and unfixed["subnormal_weights"] == before
    assert unfixed["subnormal_activations"] > 0

    report = zero_tiny_weights(path)
    assert report["zeroed"] == report["subnormal"] == before
    assert sum(t["zeroed"] for t in report["tensors"].values()) == before and len(report["tensors"]) == 2
    assert _subnormal_weights(path) == 0
    assert check_parity(model, path, {"x": x, "batch 3": torch.rand(3, 3, 32, 32)}, tol=1e-6)["max_abs_diff"] < 1e-6
    fixed = denormal_check(path, x, threads=1, runs=4)
    assert not fixed["denormal_arithmetic"] and fixed["subnormal_activations"] == 0


def test_weights_small_against_their_tensor_but_normal_are_zeroed_and_ordinary_ones_kept(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 1)).eval()
    with torch.no_grad():
        model[0].weight.fill_(0.5)
        model[0].weight[0, 0] = 1e-20  # normal, but 2^-40 of 0.5 is 4.5e-13
        model[0].weight[1, 0] = 1e-6
    path = tmp_path / "model.onnx"
    export_onnx(model, torch.rand(1, 3, 8, 8), path)
    assert zero_tiny_weights(path)["zeroed"] == 1
    weight = numpy_helper.to_array(next(t for t in onnx.load(str(path)).graph.initializer if t.dims == [4, 3, 1, 1]))
    assert weight[0, 0, 0, 0] == 0 and np.isclose(weight[1, 0, 0, 0], 1e-6) and (weight[2:] == 0.5).all()


@pytest.fixture(scope="module")
def dead_channel_detector(tmp_path_factory):
    """A 64-px detector whose BatchNorm γ is 1e-40 in half the channels of two layers (as L1 on γ
    leaves them), saved as a checkpoint beside a tiny dataset."""
    root = tmp_path_factory.mktemp("denormal")
    manifest = TASK.prepare_dataset({"path": None, "synthetic": {"n_train": 4, "n_val": 4, "imgsz": 64, "difficulty": 0.2}},
                                    root / "data", seed=0)
    write_json(root / "dataset.json", manifest)
    arch = {"family": "detection", "name": "yolov5n",
            "kwargs": {"nc": manifest["nc"], "scale": "n", "anchors": ANCHORS, "shortcut": True, "act": "relu"}}
    torch.manual_seed(0)
    model = TASK.build_model(arch).eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns[1:3]:
            bn.weight[: bn.num_features // 2] = 1e-40
            bn.bias[: bn.num_features // 2] = 0
    save_checkpoint(root / "dead.pt", model, arch, {"stage": "dead", "imgsz": 64, "names": manifest["names"]})
    return root


def test_export_stage_reports_the_zeroed_weights_and_publishes_none(dead_channel_detector, caplog):
    root = dead_channel_detector
    report = export_stage(checkpoint=root / "dead.pt", manifest_path=root / "dataset.json", export_cfg=CFG,
                          out_onnx=root / "dead.onnx", out_report=root / "dead.json")
    zeroed = read_json(root / "dead.json")["denormal_weights"]
    assert zeroed == report["denormal_weights"] and zeroed["zeroed"] > 0 and len(zeroed["tensors"]) >= 2
    assert _subnormal_weights(root / "dead.onnx") == 0
    assert report["parity"]["max_abs_diff"] <= CFG["parity_tol"]
    with caplog.at_level(logging.WARNING, logger="slimflow"):
        metrics = evaluate_onnx_stage(onnx_path=root / "dead.onnx", report_path=root / "dead.json",
                                      manifest_path=root / "dataset.json", eval_cfg=defaults()["evaluate"],
                                      export_cfg=CFG, seed=0, threads=1, out_metrics=root / "metrics.json")
    assert metrics["denormals"]["subnormal_weights"] == 0
    assert metrics["denormals"]["denormal_arithmetic"] == bool(metrics["denormals"]["subnormal_activations"])
    assert [r.message.startswith(str(root / "dead.onnx")) for r in caplog.records
            if r.levelno == logging.WARNING] == ([True] if metrics["denormals"]["denormal_arithmetic"] else [])
