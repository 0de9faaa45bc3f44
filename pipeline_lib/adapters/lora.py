"""LoRA: low-rank adapters on Linear and Conv2d layers, trained alone and merged into plain weights.

    names = inject(model, r=8, alpha=16, dropout=0.0, targets=None, fixed=task.keep_width_modules(model))
    ...train: only the adapters require grad...
    adapter = adapter_state(model)          # the adapters' tensors alone: a file of kilobytes
    merge(model)                            # W <- W + (alpha / r) * B @ A; the model is plain again

A wrapped layer computes `base(x) + (alpha / r) * B(A(dropout(x)))` with A random (Kaiming, as
in the LoRA paper) and B zero, so at step 0 the model is exactly the base. For a k×k conv, A is
a k×k conv in→r with the base's stride, padding, dilation and groups and B a 1×1 conv r→out with
the same groups, so the merged delta is one k×k kernel per group (grouped convs need r to be a
multiple of `groups`). The merge uses the same `alpha / r` as the forward pass; the two agree
to float rounding (tests/test_lora.py).

Why not peft: its merge refuses grouped convs (`merge_and_unload` raises for groups > 1) and it
brings transformers, accelerate and huggingface_hub (172 MB, 2.8 s to import here) into every
step; the wrapper below is the same arithmetic in a page.
"""
from __future__ import annotations

import fnmatch
import logging
import math

import torch
from torch import nn

from ..errors import UserError

__all__ = ["LoRALayer", "inject", "merge", "adapter_state", "load_adapter_state", "resolve_targets", "norm_layers",
           "FrozenNorms", "KINDS", "full_rank", "warn_full_rank"]

KINDS = {"linear": nn.Linear, "conv": nn.Conv2d}
_SHOWN = 4  # layers a warning names before "and N more"

log = logging.getLogger("slimflow")


class LoRALayer(nn.Module):
    """`base` (frozen) plus a scaled low-rank path; `merged()` returns `base` with the delta folded in."""

    def __init__(self, base: nn.Linear | nn.Conv2d, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base, self.r, self.alpha = base, r, alpha
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if isinstance(base, nn.Linear):
            self.lora_A = nn.Linear(base.in_features, r, bias=False)
            self.lora_B = nn.Linear(r, base.out_features, bias=False)
        else:
            g = base.groups
            self.lora_A = nn.Conv2d(base.in_channels, r, base.kernel_size, base.stride, base.padding, base.dilation,
                                    groups=g, bias=False, padding_mode=base.padding_mode)
            self.lora_B = nn.Conv2d(r, base.out_channels, 1, groups=g, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.lora_A.to(base.weight)  # the base's dtype and device
        self.lora_B.to(base.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) · B·A in the base weight's shape."""
        a, b = self.lora_A.weight, self.lora_B.weight
        if isinstance(self.base, nn.Linear):
            return (b @ a) * self.scaling
        g = self.base.groups  # per group: (out/g × r/g) @ (r/g × in/g·k·k)
        delta = torch.bmm(b.reshape(g, b.shape[0] // g, -1), a.reshape(g, a.shape[0] // g, -1))
        return delta.reshape(self.base.weight.shape) * self.scaling

    @torch.no_grad()
    def merged(self) -> nn.Linear | nn.Conv2d:
        self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        return self.base


def _kind(module: nn.Module) -> str | None:
    return next((k for k, cls in KINDS.items() if type(module) is cls), None)


def resolve_targets(model: nn.Module, targets: list[str] | None, fixed: list[nn.Module] = (),
                    key: str = "lora") -> list[str]:
    """Names of the Linear/Conv2d modules `targets` selects: a kind (`linear`, `conv`) or an
    fnmatch pattern of module names; None is every such layer whose width the family fixes not
    (`fixed`: its heads and embeddings). Matching nothing is a UserError naming `key`.targets."""
    layers = {name: m for name, m in model.named_modules() if _kind(m) is not None}
    if targets is None:
        fixed_ids = {id(m) for m in fixed}
        chosen = [n for n, m in layers.items() if id(m) not in fixed_ids]
    else:
        chosen = [n for n, m in layers.items()
                  if any(t == _kind(m) or fnmatch.fnmatchcase(n, t) for t in targets)]
        unmatched = [t for t in targets if t not in KINDS and not any(fnmatch.fnmatchcase(n, t) for n in layers)]
        if unmatched:
            raise UserError(f"{key}.targets: {unmatched[0]!r} matches no Linear or Conv2d layer; names look like "
                            f"{', '.join(list(layers)[:3])} (or use a kind: {', '.join(KINDS)})")
    if not chosen:
        raise UserError(f"{key}.targets: {targets!r} selects no Linear or Conv2d layer of this model")
    return chosen


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def inject(model: nn.Module, *, r: int, alpha: float, dropout: float = 0.0, targets: list[str] | None = None,
           fixed: list[nn.Module] = (), train_bn: bool = False, key: str = "lora") -> list[str]:
    """Wrap the selected layers in place and freeze everything but the adapters (and, with
    `train_bn`, the norm layers' affine parameters). Returns the wrapped layers' names."""
    names = resolve_targets(model, targets, fixed, key)
    for name in names:
        layer = model.get_submodule(name)
        groups = getattr(layer, "groups", 1)
        if r % groups:
            raise UserError(f"{key}.r: {name} is a conv with groups={groups}; r={r} must be a multiple of it "
                            "(or leave the layer out of lora.targets)")
        _set(model, name, LoRALayer(layer, r, alpha, dropout))
    model.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, LoRALayer):
            m.lora_A.requires_grad_(True)
            m.lora_B.requires_grad_(True)
    if train_bn:
        for m in norm_layers(model):
            for p in m.parameters(recurse=False):
                p.requires_grad_(True)
    return names


def full_rank(layer: nn.Linear | nn.Conv2d) -> int:
    """The rank r at which `B·A` can be any update of the layer's weight. The delta is one matrix per
    group, out/g × (in/g·k·k), of rank at most r/g, so r reaches full rank at
    groups · min(out/g, in/g·k·k): min(out, in·k·k) for an ungrouped conv, min(out, in) for a Linear."""
    if isinstance(layer, nn.Linear):
        return min(layer.out_features, layer.in_features)
    g = layer.groups
    return g * min(layer.out_channels // g, layer.in_channels // g * math.prod(layer.kernel_size))


def warn_full_rank(model: nn.Module, names: list[str], r: int, key: str = "lora") -> list[str]:
    """One warning line naming the adapted layers whose full rank r reaches (their adapter is a
    full-rank update with at least as many parameters as the layer itself); returns their names."""
    wide = {}
    for name in names:
        layer = model.get_submodule(name)
        layer = layer.base if isinstance(layer, LoRALayer) else layer
        if r >= full_rank(layer):
            wide[name] = full_rank(layer)
    if wide:
        shown = ", ".join(f"{n} (full rank {k})" for n, k in list(wide.items())[:_SHOWN])
        more = f" and {len(wide) - _SHOWN} more" if len(wide) > _SHOWN else ""
        log.warning("%s.r: r=%d is at or above the full rank of %d of %d adapted layers: %s%s; there the adapter "
                    "is a full-rank update with more parameters than the layer. Lower r below %d, or leave those "
                    "layers out of %s.targets", key, r, len(wide), len(names), shown, more, min(wide.values()), key)
    return list(wide)


def norm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class FrozenNorms:
    """Engine hook: norm layers stay in eval mode, so their running statistics stay the base's
    (train mode would update them on every batch although no parameter of theirs trains)."""

    def on_train_mode(self, model: nn.Module) -> None:
        for m in norm_layers(model):
            m.eval()


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer: the model is plain again, with the base's names."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoRALayer):
            _set(model, name, m.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def adapter_state(model: nn.Module, train_bn: bool = False) -> dict[str, torch.Tensor]:
    """The tensors a LoRA stage changed: every adapter's A and B, and with `train_bn` the norm
    layers' whole state (affine and running statistics), under the wrapped model's names."""
    norms = {id(m) for m in norm_layers(model)} if train_bn else set()
    state = {}
    for name, m in model.named_modules():
        if isinstance(m, LoRALayer) or id(m) in norms:
            for key, value in m.state_dict().items():
                if not key.startswith("base."):
                    state[f"{name}.{key}"] = value.detach().cpu().clone()
    return state


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `adapter_state` output into an injected model; a tensor that does not fit is one UserError."""
    own = model.state_dict()
    missing = sorted(k for k in own if (".lora_A." in k or ".lora_B." in k) and k not in state)
    unknown = sorted(k for k in state if k not in own)
    if missing or unknown:
        raise UserError(f"{source}: the adapter does not fit this model: {len(missing)} adapter tensors missing "
                        f"(e.g. {missing[0] if missing else '-'}), {len(unknown)} unknown "
                        f"(e.g. {unknown[0] if unknown else '-'})")
    bad = next((k for k, v in state.items() if v.shape != own[k].shape), None)
    if bad is not None:
        raise UserError(f"{source}: the adapter does not fit this model: {bad} is {tuple(state[bad].shape)}, "
                        f"the model has {tuple(own[bad].shape)}")
    model.load_state_dict(state, strict=False)
