"""Masked versus pruned: zeroing the planned channels' γ and β equals removing them."""
import copy

import pytest
import torch
import torchvision
from torch import nn

from pipeline_lib.checkpoint import load_checkpoint, save_checkpoint
from pipeline_lib.errors import UserError
from pipeline_lib.slimming import apply_mask, plan_at_threshold, plan_prune, prune_model, score_groups
from pipeline_lib.tasks import build_from_checkpoint, get_task
from pipeline_lib.tasks.detection.model import YOLODetector
from pipeline_lib.profile import count_flops, count_params

from conftest import randomize_bn


CASES = {
    "yolov5n": (lambda: YOLODetector(3, "n"), lambda m: m.keep_width_modules(), 64),
    "yolov5s-no-shortcut": (lambda: YOLODetector(3, "s", shortcut=False), lambda m: m.keep_width_modules(), 64),
    "yolov5s": (lambda: YOLODetector(3, "s"), lambda m: m.keep_width_modules(), 96),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), lambda m: [m.fc], 64),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), lambda m: [m.classifier[1]], 64),
}


@pytest.mark.parametrize("name", list(CASES))
def test_masked_and_pruned_models_agree(name):
    build, keep, size = CASES[name]
    torch.manual_seed(0)
    model = randomize_bn(build())
    example = torch.rand(1, 3, size, size)
    plan = plan_prune(model, example, ratio=0.4, min_channels=4, keep=keep(model))
    assert 0.3 < plan.achieved_ratio <= 0.4 + 1e-9
    masked = apply_mask(copy.deepcopy(model), plan)
    before = count_params(model)
    prune_model(model, example, plan)
    assert count_params(model) < 0.85 * before
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(masked(x), model(x), atol=1e-4, rtol=0)


def test_guard_keeps_min_channels_and_gate_names_largest_feasible_ratio():
    model = randomize_bn(YOLODetector(3, "n"))
    example = torch.rand(1, 3, 64, 64)
    with pytest.raises(UserError, match=r"largest feasible ratio is 0\.\d{3}") as info:
        plan_prune(model, example, ratio=0.95, min_channels=8, keep=model.keep_width_modules())
    feasible = float(str(info.value).split("ratio is ")[1].split()[0])
    ok = plan_prune(model, example, ratio=feasible, min_channels=8, keep=model.keep_width_modules())
    with pytest.warns(UserWarning, match="clamping"):
        plan = plan_prune(model, example, ratio=0.95, min_channels=8, round_to=8, keep=model.keep_width_modules(),
                          on_infeasible="clamp")
    assert ok.achieved_ratio == pytest.approx(feasible, abs=2e-3)
    # prune.json's record of the clamped layers: min_channels, and only where the threshold asked for fewer.
    assert not ok.clamped and plan.clamped
    for entry in plan.clamped_report():
        assert entry["reason"] == ["min_channels"] and entry["kept"] >= 8
        group = next(g for g in plan.groups if g.root == entry["layer"])
        assert entry["kept"] == group.channels - len(group.remove) and entry["bns"]
    prune_model(model, example, plan)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_features >= 8 and m.num_features % 8 == 0
    assert model.eval()(torch.rand(1, 3, 64, 64)).shape[-1] == 8  # the Detect head kept its width


def test_tied_scales_stop_the_plan_instead_of_pruning_nothing():
    model = YOLODetector(3, "n")  # untrained: every γ is 1.0, no channel ranks below another
    example = torch.rand(1, 3, 64, 64)
    with pytest.raises(UserError, match=r"prune\.ratio=0\.5: \d+ of \d+ prunable channels share \|γ\|=1, .*sr > 0"):
        plan_prune(model, example, ratio=0.5, min_channels=8, keep=model.keep_width_modules())
    with pytest.warns(UserWarning, match="pruning only those"):
        plan = plan_prune(model, example, ratio=0.5, min_channels=8, keep=model.keep_width_modules(),
                          on_infeasible="clamp")
    assert plan.achieved_ratio == 0
    assert len(plan.clamped) == len(plan.groups)  # every group keeps channels only because of the tie
    assert all("tied γ" in g.clamped for g in plan.groups)


def _reid_arch(name):
    return {"family": "reid", "name": name, "kwargs": {"num_classes": 5, "name": name, "last_stride": 1,
                                                       "neck_feat": "after"}}


DROP_CASES = {  # family, arch, input size, the blocks whose inner scales are made small, shared channels made small
    "yolov5n": ("detection", {"family": "detection", "name": "yolov5n", "kwargs": {"nc": 3, "scale": "n"}}, (64, 64),
                ["stage2.1.m.0", "stage3.1.m.1", "stage4.1.m.1"],
                # stage3.1's shortcut channels, a group rooted in stage3.1.m.1.cv2 (which goes with its block)
                ["stage3.1.cv1.bn", "stage3.1.m.0.cv2.bn", "stage3.1.m.1.cv2.bn"]),
    "resnet18": ("reid", _reid_arch("resnet18"), (64, 32), ["backbone.layer1.1", "backbone.layer3.1"], []),
    "resnet50": ("reid", _reid_arch("resnet50"), (64, 32), ["backbone.layer2.2"], []),
}


@pytest.mark.parametrize("name", list(DROP_CASES))
def test_a_block_whose_inner_channels_all_fall_below_the_threshold_is_dropped(name, tmp_path):
    """prune.drop_blocks: masked equals pruned, the block is an Identity, the channels it shared
    with its shortcut are still pruned, and the checkpoint rebuilds the same network."""
    family, arch, size, small, shared = DROP_CASES[name]
    task = get_task(family)
    model = randomize_bn(task.build_model(arch))
    blocks = task.residual_blocks(model)
    assert set(small) <= set(blocks)
    with torch.no_grad():  # every BN inside the block except the one before its sum (the last)
        for block in small:
            bns = [m for m in model.get_submodule(block).modules() if isinstance(m, nn.BatchNorm2d)]
            for bn in bns[:-1]:
                bn.weight.mul_(1e-3)
        for bn in shared:
            model.get_submodule(bn).weight[:2] *= 1e-3
    example = torch.rand(1, 3, *size)
    keep = task.keep_width_modules(model)
    scored = score_groups(model, example, keep)
    plan = plan_at_threshold(model, scored, 0.01, min_channels=4, blocks=blocks)
    assert plan.dropped == small
    without = plan_at_threshold(model, scored, 0.01, min_channels=4)  # the same threshold, blocks kept
    assert not without.dropped and plan.achieved_ratio > without.achieved_ratio
    masked = apply_mask(copy.deepcopy(model), plan)
    pruned = prune_model(copy.deepcopy(model), example, plan)
    assert all(isinstance(pruned.get_submodule(b), nn.Identity) for b in small)
    assert task.residual_blocks(pruned) == [b for b in blocks if b not in small]  # a second iteration's candidates
    for bn in shared[:1]:
        assert pruned.get_submodule(bn).num_features == model.get_submodule(bn).num_features - 2
    assert count_flops(pruned, example) < count_flops(prune_model(copy.deepcopy(model), example, without), example)
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert torch.allclose(masked(x), pruned(x), atol=1e-4, rtol=0)
    save_checkpoint(tmp_path / "p.pt", pruned, {**arch, "dropped": plan.dropped}, {"stage": "pruned"})
    rebuilt = build_from_checkpoint(load_checkpoint(tmp_path / "p.pt")).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pruned(x))
