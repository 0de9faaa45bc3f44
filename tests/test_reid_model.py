"""ReID network: BNNeck outputs, last stride, checkpoint round trip, and masked-versus-pruned equivalence."""
import copy

import pytest
import torch
from torch import nn

from pipeline_lib.checkpoint import load_checkpoint, save_checkpoint
from pipeline_lib.tasks import build_from_checkpoint
from pipeline_lib.profile import count_flops
from pipeline_lib.slimming import apply_mask, plan_prune, prunable_bns, prune_model
from pipeline_lib.tasks.reid.task import TASK
from pipeline_lib.tasks.reid.model import ReIDNet

from conftest import randomize_bn

SIZE = (64, 32)


def test_train_mode_gives_logits_and_pre_neck_feature_eval_gives_embedding():
    model = ReIDNet(7, "resnet18", neck_feat="after")
    logits, feat = model.train()(torch.rand(4, 3, *SIZE))
    assert logits.shape == (4, 7) and feat.shape == (4, 512)
    assert model.classifier.bias is None and not model.bnneck.bias.requires_grad
    model.eval()
    x = torch.rand(2, 3, *SIZE)
    after = model(x)
    model.neck_feat = "before"
    before = model(x)
    assert torch.allclose(after, model.bnneck(before)) and after.shape == (2, 512)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_last_stride_one_doubles_the_final_feature_map(name):
    trunk = lambda s: nn.Sequential(*list(ReIDNet(3, name, last_stride=s).backbone.children())[:-2])  # noqa: E731
    assert trunk(1)(torch.rand(1, 3, *SIZE)).shape[-2:] == (4, 2)
    assert trunk(2)(torch.rand(1, 3, *SIZE)).shape[-2:] == (2, 1)


def test_checkpoint_round_trip_keeps_the_frozen_neck_bias(tmp_path):
    arch = {"family": "reid", "name": "resnet18", "kwargs": {"num_classes": 5, "name": "resnet18", "last_stride": 1,
                                                              "neck_feat": "after"}}
    model = randomize_bn(TASK.build_model(arch))
    save_checkpoint(tmp_path / "m.pt", model, arch, {"stage": "test"})
    rebuilt = build_from_checkpoint(load_checkpoint(tmp_path / "m.pt", family="reid")).eval()
    x = torch.rand(2, 3, *SIZE)
    assert torch.equal(model(x), rebuilt(x)) and not rebuilt.bnneck.bias.requires_grad


def test_example_input_follows_the_configured_height_and_width():
    assert TASK.example_input([64, 32]).shape == (1, 3, 64, 32)
    assert TASK.example_input(64, batch=2).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("name, neck_feat", [("resnet18", "after"), ("resnet18", "before"), ("resnet50", "after")])
def test_masked_and_pruned_reid_models_agree(name, neck_feat, tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(ReIDNet(10, name, neck_feat=neck_feat))
    example = TASK.example_input(list(SIZE))
    keep = TASK.keep_width_modules(model)
    # The embedding keeps its width: the neck and layer4's residual outputs tied to it are not prunable.
    assert model.bnneck not in prunable_bns(model, example, keep)
    plan = plan_prune(model, example, ratio=0.4, min_channels=4, keep=keep)
    assert 0.3 < plan.achieved_ratio <= 0.4 + 1e-9
    masked = apply_mask(copy.deepcopy(model), plan)
    flops = count_flops(model, example)
    prune_model(model, example, plan)
    assert count_flops(model, example) < 0.8 * flops
    assert model.classifier.out_features == 10 and model.bnneck.num_features == masked.bnneck.num_features
    x = torch.rand(3, 3, *SIZE)
    with torch.no_grad():
        assert torch.allclose(masked(x), model(x), atol=1e-4, rtol=0)
        assert torch.allclose(masked.logits(x), model.logits(x), atol=1e-4, rtol=0)

    # A pruned checkpoint rebuilds from its state_dict shapes alone.
    arch = {"family": "reid", "name": name, "kwargs": {"num_classes": 10, "name": name, "last_stride": 1,
                                                        "neck_feat": neck_feat}}
    save_checkpoint(tmp_path / "p.pt", model, arch, {"stage": "pruned"})
    rebuilt = build_from_checkpoint(load_checkpoint(tmp_path / "p.pt")).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    assert not rebuilt.bnneck.bias.requires_grad
