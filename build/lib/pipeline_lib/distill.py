"""Knowledge distillation while finetuning: the chain's unpruned model teaches the pruned one.

    teacher = load_teacher("results/sparse.pt", family="detection", device=dev).model
    criterion = Distillation(task.criterion(model, train_cfg), teacher, task, train_cfg["distill"])
    loss, items = criterion(model, batch)   # the family's loss + weight · distill term; items["distill"]

A criterion wrapper, so the one training loop (`engine.train`) runs it like any other criterion
(DDP, AMP, accumulation, LoRA, resume): no second loop. The student's output is taken from the
family criterion's own forward pass (a forward hook), so the student runs once per batch, and
the teacher sees the very same (augmented) images.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .contracts import Criterion, StatefulCriterion
from .engine.ema import unwrap
from .tasks import LoadedModel, Task, load_model

__all__ = ["teacher_mode", "load_teacher", "Distillation"]

_FROZEN = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def teacher_mode(model: nn.Module) -> nn.Module:
    """The teacher's mode: norm layers and dropout in eval mode, everything else in train mode.

    Eval-mode norms use the teacher's running statistics — its targets are what it predicts at
    inference, independent of the batch, and its buffers never move. The modules' `training`
    flag stays on because it also selects the *form* of a family's output (detection: raw
    per-level maps instead of decoded boxes; ReID: (logits, feature) instead of the embedding),
    and the teacher's must have the form the student's train-mode forward returns. A student
    whose norms are frozen too (LoRA without train_bn) and whose weights equal the teacher's thus
    gets a distillation loss of exactly 0.
    """
    model.train()
    for m in model.modules():
        if isinstance(m, _FROZEN):
            m.eval()
    return model


def load_teacher(path: str | os.PathLike, family: str, device: torch.device) -> LoadedModel:
    """The teacher checkpoint, its network on `device`, frozen (no gradients) and in `teacher_mode`."""
    loaded = load_model(path, family=family)
    teacher_mode(loaded.model.requires_grad_(False).to(device))
    return loaded


class Distillation:
    """`criterion` plus `cfg["weight"]` × the family's distillation term against `teacher`.

    The term is logged as `distill` (per image, unweighted) beside the family's own items. The
    teacher runs under `torch.no_grad` in `teacher_mode`; nothing of it is ever trained or saved.
    """

    def __init__(self, criterion: Criterion, teacher: nn.Module, task: Task, cfg: dict):
        self.criterion, self.teacher, self.task, self.cfg = criterion, teacher, task, cfg

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        outputs: list[Any] = []
        handle = unwrap(model).register_forward_hook(lambda module, args, out: outputs.append(out))
        try:
            loss, items = self.criterion(model, batch)
        finally:
            handle.remove()
        with torch.no_grad():
            teacher_out = self.teacher(batch["images"])
        term = self.task.distill_loss(outputs[-1], teacher_out, self.cfg)
        scale = len(batch["images"]) if self.task.loss_sums_over_batch else 1
        return loss + self.cfg["weight"] * scale * term, {**items, "distill": term.item()}

    # The engine saves a stateful criterion's state (ReID's class centres) with the resume state.
    def state_dict(self) -> dict[str, Any] | None:
        return self.criterion.state_dict() if isinstance(self.criterion, StatefulCriterion) else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.criterion.load_state_dict(state)
