"""The judge: a small digit classifier that scores a diffusion model's samples.

    model, info = train_judge(train_loader, val_loader, epochs=20, patience=3, lr=1e-3, seed=0, device="cpu")
    info["val_acc"], info["val_acc_per_class"]    # the best epoch's: the ceiling of any cond_acc it reads
    save_judge("results/judge.pt", model, info)
    judge, info = load_judge("results/judge.pt")
    logits, features = judge_outputs(judge, samples)     # samples: (N, 1, H, W) in [0, 1]
    cond_acc = (logits.argmax(1) == requested).float().mean()

`features` are the penultimate activations (N, feature_dim): the Fréchet distance of the samples'
features to the val split's (`frechet.py`) is this family's FID. The judge is trained once, on the
training split, and never pruned; every stage's samples are scored by the same network. It trains
until its val accuracy has not improved for `patience` epochs (at most `epochs`) and keeps its best
epoch: a sample of digit c is read right at most about as often as a val digit c is, so that
accuracy, per class, is the ceiling of every stage's cond_acc.
"""
from __future__ import annotations

import copy
import math
import os
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:  # torchvision (~1.5 s with torch._dynamo) is imported by the judge's training only
    from torchvision.transforms import v2

from ...checkpoint import load_checkpoint, load_weights, save_checkpoint
from ...errors import UserError

__all__ = ["DigitJudge", "train_judge", "evaluate_judge", "class_accuracy", "save_judge", "load_judge",
           "judge_outputs"]

_GRID = 4  # the trunk's output is pooled to 4x4 cells: input-size agnostic, and keeps where strokes are
_AUG_GROUP = 8  # images that share one random affine (see _augment)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitJudge(nn.Module):
    """conv-BN-ReLU ×2, maxpool, conv-BN-ReLU ×2, maxpool, adaptive pool to 4×4, Linear → ReLU (features),
    Dropout, Linear (logits). Inputs: (B, 1, H, W) in [0, 1], any H, W ≥ 4."""

    def __init__(self, num_classes: int = 10, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.config = {"num_classes": num_classes, "width": width, "feature_dim": feature_dim}  # the arch kwargs
        self.trunk = nn.Sequential(
            _conv_bn_relu(1, width), _conv_bn_relu(width, width), nn.MaxPool2d(2),
            _conv_bn_relu(width, 2 * width), _conv_bn_relu(2 * width, 2 * width), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(_GRID), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(2 * width * _GRID * _GRID, feature_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim): the penultimate activations (after the ReLU, before dropout)."""
        return self.embed(self.trunk(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def _augment(affine: v2.RandomAffine, images: torch.Tensor) -> torch.Tensor:
    # v2 draws one set of parameters per call, applied to the whole tensor; a call per image costs
    # ~0.4 ms on the CPU (+25 s per MNIST epoch), so groups of _AUG_GROUP images share one draw:
    # a batch of 128 still sees 16 different transforms at 1/8 of that cost.
    return torch.cat([affine(group) for group in images.split(_AUG_GROUP)])


@torch.no_grad()
def class_accuracy(model: nn.Module, loader: Iterable[dict], device: str | torch.device,
                   num_classes: int) -> tuple[float, list[float | None]]:
    """Top-1 accuracy on `loader` in eval mode (the model is left in eval mode), overall and per
    class (None for a class the loader never shows)."""
    model.eval()
    correct, total = torch.zeros(num_classes, dtype=torch.float64), torch.zeros(num_classes, dtype=torch.float64)
    for batch in loader:
        labels = batch["labels"].to(device)
        hits = (model(batch["images"].to(device)).argmax(1) == labels).double()
        correct += torch.bincount(labels.cpu(), hits.cpu(), minlength=num_classes)[:num_classes]
        total += torch.bincount(labels.cpu(), minlength=num_classes)[:num_classes]
    if total.sum() == 0:
        raise ValueError("the validation loader yielded no images")
    per_class = [float(c / n) if n else None for c, n in zip(correct, total)]
    return float(correct.sum() / total.sum()), per_class


def evaluate_judge(model: nn.Module, loader: Iterable[dict], device: str | torch.device) -> float:
    """Top-1 accuracy on `loader` in eval mode (the model is left in eval mode)."""
    return class_accuracy(model, loader, device, model.classifier[-1].out_features)[0]


def _train_epoch(model: DigitJudge, loader: Iterable[dict], optimizer: torch.optim.Optimizer,
                 affine: v2.RandomAffine, device: torch.device, epoch: int) -> float:
    """One epoch of Adam steps under the affine jitter; the mean training loss."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):  # make_loader's DistributedSampler: a new order per epoch
        sampler.set_epoch(epoch)
    model.train()
    loss_sum, count = 0.0, 0
    for batch in loader:
        images = _augment(affine, batch["images"].to(device))
        labels = batch["labels"].to(device)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * labels.numel()
        count += labels.numel()
    if count == 0:
        raise ValueError("the training loader yielded no images")
    return loss_sum / count


def train_judge(train_loader: Iterable[dict], val_loader: Iterable[dict], *, epochs: int, patience: int | None = None,
                lr: float = 1e-3, seed: int, device: str | torch.device, num_classes: int = 10, width: int = 32,
                feature_dim: int = 128, log: Callable[[str], None] | None = None
                ) -> tuple[DigitJudge, dict[str, Any]]:
    """Train a DigitJudge with Adam and cross-entropy under small class-keeping affine jitter, until
    its val accuracy has not risen for `patience` epochs (None: never stop early) or `epochs` ran.

    Returns the best epoch's model in eval mode and {"val_acc", "val_acc_per_class", "best_epoch",
    "epochs" (run), "epoch_cap", "patience", "train_loss" (the best epoch's mean), "val_acc_history"}.
    Deterministic for a seed on the CPU: initialisation, augmentation and dropout draw from torch's
    global RNG, seeded here inside `torch.random.fork_rng`, so the caller's RNG state is the same
    afterwards (evaluating draws nothing). The batch order is the loader's (its own seed).
    """
    from torchvision.transforms import v2

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    history, best = [], None
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        model = DigitJudge(num_classes, width, feature_dim).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        affine = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))
        for epoch in range(epochs):
            train_loss = _train_epoch(model, train_loader, optimizer, affine, device, epoch)
            val_acc, per_class = class_accuracy(model, val_loader, device, num_classes)
            history.append(round(val_acc, 6))
            if best is None or val_acc > best["val_acc"]:
                best = {"val_acc": val_acc, "val_acc_per_class": per_class, "best_epoch": epoch + 1,
                        "train_loss": train_loss, "state": copy.deepcopy(model.state_dict())}
            if log is not None:
                log(f"judge epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f}, val accuracy {val_acc:.4f}")
            if patience is not None and epoch + 1 - best["best_epoch"] >= patience:
                break
    model.load_state_dict(best.pop("state"))
    model.eval()
    return model, {**best, "epochs": len(history), "epoch_cap": epochs, "patience": patience,
                   "val_acc_history": history}


def _arch(model: DigitJudge) -> dict:
    return {"family": "diffusion", "name": "judge", "kwargs": dict(model.config)}


def save_judge(path: str | os.PathLike, model: DigitJudge, info: dict[str, Any]) -> None:
    """Atomically write the judge as a slimflow checkpoint (sealed, weights_only-loadable); `info` is its meta."""
    save_checkpoint(path, model, _arch(model), dict(info))


def load_judge(path: str | os.PathLike) -> tuple[DigitJudge, dict[str, Any]]:
    """The judge saved by `save_judge`, on the CPU in eval mode, and its info (plus the `versions` stamp)."""
    ckpt = load_checkpoint(path, family="diffusion")
    if ckpt["arch"]["name"] != "judge":
        raise UserError(f"{path}: a diffusion {ckpt['arch']['name']!r} checkpoint, not the judge; "
                        "give the file the judge step writes")
    try:
        model = DigitJudge(**ckpt["arch"]["kwargs"])
    except TypeError as e:
        raise UserError(f"{path}: the judge's arch kwargs do not fit DigitJudge ({e}); "
                        "delete it and rerun the judge step") from None
    load_weights(model, ckpt["state_dict"], keep=[model.classifier[-1]], source=path)
    return model.eval(), ckpt["meta"]


@torch.no_grad()
def judge_outputs(model: DigitJudge, images: torch.Tensor, batch_size: int = 256
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, num_classes) and features (N, feature_dim) of images (N, 1, H, W) in [0, 1], on the CPU.

    Runs in eval mode on the model's device; the model's train/eval mode is restored afterwards."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got shape {tuple(images.shape)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, features = [], []
    try:
        for chunk in images.split(batch_size):
            feats = model.features(chunk.to(device, torch.float32))
            logits.append(model.classifier(feats).cpu())
            features.append(feats.cpu())
    finally:
        model.train(was_training)
    num_classes = model.classifier[-1].out_features
    if not logits:  # N = 0
        return torch.zeros(0, num_classes), torch.zeros(0, model.embed[0].out_features)
    return torch.cat(logits), torch.cat(features)
