"""AMP where this machine can check it: `train.amp: true` autocasts in bf16 on the CPU too, so a
dtype mistake in a loss, the EMA, the L1 sparsity hook, LoRA adapters or distillation fails here
rather than on a user's GPU. (The tiny chain through snakemake with AMP: test_amp_e2e.py.)"""
import copy
import math

import pytest
import torch
from torch import nn

from pipeline_lib import adapters
from pipeline_lib.config import defaults
from pipeline_lib.distill import Distillation, teacher_mode
from pipeline_lib.engine import train
from pipeline_lib.engine.utils import amp_dtype, seed_everything
from pipeline_lib.slimming import L1Sparsity
from pipeline_lib.tasks import get_task


@pytest.mark.parametrize("setting, device, expected", [
    ("auto", "cpu", None), (False, "cpu", None), (True, "cpu", torch.bfloat16), (False, "cuda", None),
    ("auto", "meta", None), (True, "meta", None)])
def test_amp_setting_picks_the_autocast_dtype(setting, device, expected):
    assert amp_dtype(setting, torch.device(device)) is expected


class _OneBatch(list):
    """A loader of one detection batch, as the engine reads loaders."""

    batch_size, sampler, dataset = 2, None, None


def test_a_lora_step_with_distillation_ema_and_l1_trains_under_bf16_autocast(tmp_path):
    seed_everything(0)
    task = get_task("detection")
    manifest = {"names": ["a", "b", "c"], "nc": 3}
    model = task.build_model(task.arch({**defaults("detection")["model"], "imgsz": 64, "anchors": "coco"}, manifest))
    teacher = teacher_mode(copy.deepcopy(model).requires_grad_(False))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    adapters.inject(model, r=2, alpha=2, targets=None, train_bn=True)  # BN scales train: the L1 hook acts
    batch = {"images": torch.rand(2, 3, 64, 64), "targets": torch.tensor([[0, 1, .5, .5, .3, .4], [1, 2, .3, .6, .2, .2]])}
    distill = {"teacher": "sparse", "weight": 1.0, "temperature": 2.0}
    cfg = {**defaults("detection")["train"], "amp": True, "epochs": 2, "batch_size": 2, "nominal_batch_size": 2,
           "warmup_epochs": 0, "workers": 0, "distill": distill}
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    gammas = [bn.weight.detach().clone() for bn in bns]
    result = train(model, criterion=Distillation(task.criterion(model, cfg), teacher, task, distill),
                   train_loader=_OneBatch([batch]), evaluate=lambda m: {"x": 0.0}, fitness=lambda m: 0.0, cfg=cfg,
                   workdir=tmp_path, device=torch.device("cpu"), run_id="amp", hooks=[L1Sparsity(bns, 0.01)])
    assert torch.bfloat16 in seen  # the student ran under autocast
    for row in result.history:
        assert all(math.isfinite(v) for k, v in row.items() if k.startswith("train/")) and row["train/distill"] > 0
    assert all(v.dtype in (torch.float32, torch.int64) for v in result.state_dict.values())  # EMA stays fp32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    lora_b = [v for k, v in result.state_dict.items() if ".lora_B." in k]
    assert lora_b and any(bool(v.abs().sum() > 0) for v in lora_b)  # the adapters trained
    assert any(not torch.equal(g, bn.weight) for g, bn in zip(gammas, bns))
