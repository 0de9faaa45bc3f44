"""Sparsity training and pruned checkpoints."""
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pipeline_lib.checkpoint import load_checkpoint, save_checkpoint
from pipeline_lib.tasks import build_from_checkpoint
from pipeline_lib.config import defaults
from pipeline_lib.engine import train
from pipeline_lib.engine.utils import make_loader, seed_everything
from pipeline_lib.slimming import L1Sparsity, gamma_stats, plan_prune, prune_model
from pipeline_lib.tasks import get_task

from conftest import randomize_bn


def _fit(tmp_path, hooks):
    seed_everything(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 1))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, 8, 8, generator=g)
    y = x.mean((1, 2, 3)).unsqueeze(1)
    loader = make_loader(TensorDataset(x, y), batch_size=16, shuffle=True, workers=0, seed=0)
    cfg = {**defaults()["train"], "epochs": 12, "batch_size": 16, "nominal_batch_size": 16, "lr0": 0.05,
           "warmup_epochs": 0, "ema": False}

    def criterion(m, batch):
        loss = nn.functional.mse_loss(m(batch[0]), batch[1])
        return loss, {"mse": loss.item()}

    hooks = [h(model[1]) for h in hooks]
    result = train(model, criterion=criterion, train_loader=loader, evaluate=lambda m: {"x": 0.0},
                   fitness=lambda m: 0.0, cfg=cfg, workdir=tmp_path, device=torch.device("cpu"), run_id="r",
                   hooks=hooks)
    return model, result


def test_l1_subgradient_drives_gammas_towards_zero(tmp_path):
    dense, _ = _fit(tmp_path / "dense", [])
    sparse, result = _fit(tmp_path / "sparse", [lambda bn: L1Sparsity([bn], sr=0.5, decay="linear")])
    before, after = gamma_stats([dense[1]]), gamma_stats([sparse[1]])
    assert after["gamma/frac_lt_1e-2"] > before["gamma/frac_lt_1e-2"] + 0.2
    assert after["gamma/q50"] < 0.5 * before["gamma/q50"]
    assert "gamma/frac_lt_1e-3" in result.history[-1]  # the hook's columns reach the CSV


def test_the_training_loop_takes_the_proximal_step(tmp_path):
    """After every optimizer step: 48 steps of lr·sr ≈ 0.1 take every scale of a loss that barely
    reads them to exactly 0 (a subgradient leaves them oscillating around it)."""
    sparse, _ = _fit(tmp_path / "prox", [lambda bn: L1Sparsity([bn], sr=2.0, decay="none", step="proximal")])
    assert torch.all(sparse[1].weight == 0)


def test_proximal_l1_under_adam_zeroes_only_the_scales_the_loss_does_not_defend():
    bn = nn.BatchNorm2d(4)
    optimizer = torch.optim.Adam(bn.parameters(), lr=0.01)
    hook = L1Sparsity([bn], sr=0.5, step="proximal")
    for _ in range(300):  # the loss needs scale 0 at 1 and does not read the others
        optimizer.zero_grad()
        (10 * (bn.weight[0] - 1) ** 2 + 0 * bn.weight.sum()).backward()
        optimizer.step()
        hook.after_step(optimizer, 0, 10)
    assert abs(float(bn.weight[0]) - 1) < 0.05 and torch.all(bn.weight[1:] == 0)


def test_proximal_step_shrinks_by_lr_times_sr_and_stops_at_zero():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -0.5, 0.01]))
    optimizer = torch.optim.SGD([{"params": [bn.weight], "lr": 0.1}])
    L1Sparsity([bn], sr=0.2, step="proximal").after_step(optimizer, 0, 10)
    assert torch.allclose(bn.weight, torch.tensor([0.98, -0.48, 0.0]))
    L1Sparsity([bn], sr=0.2, step="gradient").after_step(optimizer, 0, 10)  # the other mode: no-op here
    assert torch.allclose(bn.weight, torch.tensor([0.98, -0.48, 0.0]))


def test_linear_decay_ends_at_a_tenth():
    hook = L1Sparsity([], sr=1e-3, decay="linear")
    assert hook.strength(0, 10) == 1e-3 and abs(hook.strength(10, 10) - 1e-4) < 1e-12


def test_pruned_checkpoint_round_trips_with_identical_outputs(tmp_path):
    task = get_task("detection")
    arch = {"family": "detection", "name": "yolov5n", "kwargs": {"nc": 3, "scale": "n", "anchors": None, "shortcut": True}}
    model = randomize_bn(task.build_model(arch)).eval()  # distinct |γ|: an untrained model has nothing to rank
    example = torch.rand(1, 3, 64, 64)
    before = sum(p.numel() for p in model.parameters())
    prune_model(model, example, plan_prune(model, example, ratio=0.5, min_channels=4, keep=model.keep_width_modules()))
    assert sum(p.numel() for p in model.parameters()) < 0.6 * before
    save_checkpoint(tmp_path / "pruned.pt", model, arch, {"stage": "pruned"})
    rebuilt = build_from_checkpoint(load_checkpoint(tmp_path / "pruned.pt", family="detection")).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
