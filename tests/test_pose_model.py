"""HRNet: layout, slimming (masked = pruned through every fusion), ONNX Runtime parity, a training smoke."""
import copy

import pytest
import torch
from torch import nn

from pipeline_lib.errors import UserError
from pipeline_lib.export.onnx_export import check_parity, export_onnx
from pipeline_lib.export.runtime import OrtModel
from pipeline_lib.profile import count_flops, count_params
from pipeline_lib.slimming import apply_mask, plan_prune, prunable_bns, prune_model
from pipeline_lib.tasks.pose.task import TASK
from pipeline_lib.tasks.pose.model import HRNet

from conftest import randomize_bn

MANIFEST = {"names": [f"k{i}" for i in range(17)]}
# Two widths; the first has several modules per stage (fusion into every branch, then into branch 0 only).
WIDTHS = {
    "w8-deep": {"width": 8, "stem": 8, "bottlenecks": 2, "modules": [1, 2, 2], "blocks": [1, 2, 1]},
    "w16-small": {"width": 16, "stem": 16},
}


def _model(name="hrnet_small", imgsz=(64, 64), **overrides):
    torch.manual_seed(0)
    return TASK.build_model(TASK.arch({"name": name, "imgsz": list(imgsz), **overrides}, MANIFEST))


def test_heatmaps_at_a_quarter_of_the_input_and_every_conv_but_the_head_feeds_a_bn():
    model = _model(imgsz=(128, 96)).eval()
    assert model(torch.rand(2, 3, 128, 96)).shape == (2, 17, 32, 24)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == len(convs) - 1 and all(c.bias is None for c in convs if c is not model.final_layer)
    # every BN's channels follow a conv's: the pruner sees a scale for every prunable channel
    assert len(prunable_bns(model, torch.rand(1, 3, 64, 64), TASK.keep_width_modules(model))) == len(bns)
    assert sum(isinstance(m, nn.Upsample) for m in model.modules()) == 1 + 3 + 3  # stages 2, 3, 4 (last: into 0)


def test_named_networks_follow_the_paper():
    w32 = HRNet(17, width=32, stem=64, bottlenecks=4, modules=(1, 4, 3), blocks=(4, 4, 4))
    assert round(count_params(w32) / 1e6, 1) == 28.5  # HRNet-W32 (pose), as in the paper
    model = _model("hrnet_w32", imgsz=(128, 96))
    assert count_params(model) == count_params(w32)
    assert len(model.stages[1]) == 4 and len(model.stages[2]) == 3 and len(model.stages[2][0].branches[3]) == 4


def test_arch_rejects_sizes_that_are_not_multiples_of_32_and_unknown_names():
    with pytest.raises(UserError, match=r"model\.imgsz: \[96, 72\]: height and width must be multiples of 32"):
        _model(imgsz=(96, 72))
    with pytest.raises(UserError, match=r"model\.name: 'resnet18' is not an HRNet with task: pose"):
        _model("resnet18")


@pytest.mark.parametrize("name", list(WIDTHS))
def test_masked_and_pruned_hrnet_agree(name):
    model = randomize_bn(_model(**WIDTHS[name]))
    example = torch.rand(1, 3, 64, 64)
    keep = TASK.keep_width_modules(model)
    plan = plan_prune(model, example, ratio=0.4, min_channels=2, keep=keep)
    assert 0.3 < plan.achieved_ratio <= 0.4 + 1e-9
    masked = apply_mask(copy.deepcopy(model), plan)
    before = {"params": count_params(model), "flops": count_flops(model, example)}
    prune_model(model, example, plan)
    assert count_params(model) < 0.85 * before["params"] and count_flops(model, example) < 0.85 * before["flops"]
    assert model.final_layer.out_channels == 17
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(masked(x), model(x), atol=1e-4, rtol=0)


def test_onnx_export_matches_pytorch_in_onnx_runtime(tmp_path):
    model = randomize_bn(_model(width=8, stem=8, imgsz=(128, 96)))
    proto = export_onnx(model, TASK.example_input([128, 96]), tmp_path / "pose.onnx", output_names=TASK.output_names)
    assert [o.name for o in proto.graph.output] == ["heatmaps"]
    resize = [n for n in proto.graph.node if n.op_type == "Resize"]
    assert len(resize) == 7  # nn.Upsample(scale_factor=...) -> Resize with constant scales
    inputs = {"batch 1": torch.rand(1, 3, 128, 96), "batch 3": torch.rand(3, 3, 128, 96)}
    parity = check_parity(model, tmp_path / "pose.onnx", inputs, tol=1e-4)
    assert parity["max_abs_diff"] <= 1e-4
    assert OrtModel(tmp_path / "pose.onnx")(torch.rand(2, 3, 128, 96)).shape == (2, 17, 32, 24)


@pytest.mark.e2e
def test_a_few_training_steps_lower_the_loss(tmp_path):
    from pipeline_lib.engine import train

    syn = {"path": None, "synthetic": {"n_train": 8, "n_val": 3, "imgsz": 64, "difficulty": 0.2}}
    manifest = TASK.prepare_dataset(syn, tmp_path / "data", seed=0)
    model = TASK.build_model(TASK.arch({"name": "hrnet_small", "imgsz": [64, 32], "width": 8, "stem": 8}, manifest))
    augment = {"rotation": 0.0, "scale": 0.0, "half_body": 0.0, "flip": 0.0}
    loader = TASK.loader(manifest, "train", train=True, imgsz=[64, 32], batch_size=4, workers=0, seed=0, augment=augment)
    val = TASK.loader(manifest, "val", train=False, imgsz=[64, 32], batch_size=4, workers=0, seed=0)
    cfg = {"epochs": 6, "nominal_batch_size": 4, "weight_decay": 0.0, "optimizer": "adam", "lr0": 0.005,
           "momentum": 0.9, "scheduler": "linear", "lrf": 1.0, "amp": False, "ema": False, "warmup_epochs": 0,
           "warmup_bias_lr": 0.0, "warmup_momentum": 0.9, "clip_grad_norm": 10.0, "val_interval": 6,
           "loss": {"sigma": 2.0, "use_target_weight": True}}
    result = train(model, criterion=TASK.criterion(model, cfg), train_loader=loader,
                   evaluate=lambda m: TASK.evaluate(m, val, torch.device("cpu"), {}, manifest), fitness=TASK.fitness,
                   cfg=cfg, workdir=tmp_path / "work", device=torch.device("cpu"), run_id="smoke")
    losses = [row["train/heatmap"] for row in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert set(result.metrics) == set(TASK.metric_keys)
