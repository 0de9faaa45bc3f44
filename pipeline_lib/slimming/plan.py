"""Prune plan: a global |γ| threshold over coupled channel groups, guards, and the surgery.

    plan = plan_prune(model, example, ratio=0.5, min_channels=8, keep=task.keep_width_modules(model))
    prune_model(model, example, plan)           # physically removes the planned channels

A *group* is torch-pruning's set of layers whose channels must change together (a conv, its BN,
every consumer, and everything tied to it by residual adds and concats). A group channel's
importance is the largest |γ| among the group's BNs: it goes only if every coupled scale is
small, which is also what makes the masked and the pruned network compute the same thing.

A residual block y = x + f(x) whose every inner channel (the groups that live inside f) falls
below the threshold is dropped whole (`blocks`, `prune.drop_blocks`): min_channels would keep
it at the floor, where a narrow layer costs ONNX Runtime its per-op overhead anyway, while the
identity costs nothing. The block's inner channels count as removed.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import UserError
from ..inputs import Inputs

if TYPE_CHECKING:  # torch-pruning is imported where a graph is built: loading a model (drop_blocks) needs none
    import torch_pruning as tp

__all__ = ["PrunePlan", "GroupPlan", "dependency_graph", "prunable_bns", "score_groups", "feasible_threshold",
           "plan_prune", "plan_at_threshold", "apply_mask", "drop_blocks", "prune_model"]

_BN = nn.modules.batchnorm._BatchNorm


@dataclass
class GroupPlan:
    root: str  # name of the module whose output channels define the group
    channels: int
    remove: list[int]  # channel indices (in the root's output) to remove
    bns: dict[str, list[int]]  # every BN of the group -> its channel indices matching `remove`
    clamped: list[str] = field(default_factory=list)  # why it keeps more than the threshold asks: min_channels, tied γ
    block: str | None = None  # the dropped residual block the group lives in (it goes with the block)


@dataclass
class PrunePlan:
    ratio: float | None  # requested fraction of prunable channels (None: planned from a threshold)
    threshold: float
    groups: list[GroupPlan] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # residual blocks replaced by the identity

    @property
    def clamped(self) -> list[GroupPlan]:
        """Groups that keep channels the global threshold would remove (`on_infeasible: clamp`)."""
        return [g for g in self.groups if g.clamped]

    def clamped_report(self) -> list[dict]:
        """prune.json's "clamped": each clamped group's root layer, its BNs, widths and why."""
        return [{"layer": g.root, "bns": list(g.bns), "channels": g.channels, "kept": g.channels - len(g.remove),
                 "reason": g.clamped} for g in self.clamped]

    @property
    def achieved_ratio(self) -> float:
        total = sum(g.channels for g in self.groups)
        return sum(len(g.remove) for g in self.groups) / max(total, 1)


def dependency_graph(model: nn.Module, example: Inputs) -> tp.DependencyGraph:
    import torch_pruning as tp

    was_training = model.training
    graph = tp.DependencyGraph().build_dependency(model.eval(), example_inputs=example)
    model.train(was_training)
    return graph


def _groups(model: nn.Module, graph: tp.DependencyGraph, keep: list[nn.Module]):
    """Yield (root module, group) for every prunable group that contains at least one BN."""
    for group in graph.get_all_groups(ignored_layers=list(keep), root_module_types=(nn.Conv2d, nn.Linear)):
        if any(isinstance(dep.target.module, _BN) for dep, _ in group):
            yield group[0].dep.target.module, group


def prunable_bns(model: nn.Module, example: Inputs, keep: list[nn.Module] = ()) -> list[nn.Module]:
    """The BN layers whose channels the planner may remove: the ones the sparsity penalty targets."""
    graph = dependency_graph(model, example)
    found = {dep.target.module: None for _, group in _groups(model, graph, keep)
             for dep, _ in group if isinstance(dep.target.module, _BN)}
    return list(found)


def _kept(n: int, n_below: int, min_channels: int, round_to: int) -> int:
    """Channels a group keeps: at least min_channels, rounded up to a multiple of round_to."""
    keep = max(n - n_below, min(min_channels, n))
    if round_to > 1:
        keep = min(n, math.ceil(keep / round_to) * round_to)
    return keep


Scored = list  # [(root module, torch-pruning group, importance per channel)] from `score_groups`


def score_groups(model: nn.Module, example: Inputs, keep: list[nn.Module] = ()) -> Scored:
    """Every prunable group with its channels' importance (the largest coupled |γ|)."""
    import torch_pruning as tp

    importance = tp.importance.BNScaleImportance(group_reduction="max", normalizer=None)
    graph = dependency_graph(model, example)
    scored = [(root, group, importance(group).detach()) for root, group in _groups(model, graph, keep)]
    if not scored:
        raise UserError("the model has no prunable BatchNorm channels")
    return scored


def feasible_threshold(scored: Scored, min_channels: int) -> float:
    """The largest threshold that leaves every group its min_channels best channels."""
    return min(float(s.sort(descending=True).values[min(min_channels, len(s)) - 1]) for _, _, s in scored)


def plan_prune(model: nn.Module, example: Inputs, ratio: float, *, min_channels: int = 8, round_to: int = 1,
               keep: list[nn.Module] = (), on_infeasible: str = "error", blocks: list[str] = ()) -> PrunePlan:
    """Plan removal of the `ratio` fraction of prunable channels with the smallest group |γ|.

    If the global threshold would leave a group with fewer than `min_channels`, the plan is
    infeasible: `on_infeasible="error"` raises a UserError naming the largest feasible ratio,
    `"clamp"` keeps min_channels there and warns. So does a ratio that equal |γ| at the threshold
    make unreachable (channels tied at the threshold are kept).
    """
    if not 0 < ratio < 1:
        raise UserError(f"prune.ratio: {ratio} must be in (0, 1)")
    scored = score_groups(model, example, keep)
    all_scores = torch.cat([s for _, _, s in scored])
    k = int(ratio * len(all_scores) + 1e-9)  # channels below the threshold (k/n gives k despite rounding)
    threshold = float(all_scores.sort().values[k])

    limit = feasible_threshold(scored, min_channels)
    if threshold > limit:
        feasible = float((all_scores < limit).float().mean())
        message = (f"prune.ratio={ratio} would leave a layer with fewer than prune.min_channels={min_channels} "
                   f"channels; the largest feasible ratio is {math.floor(feasible * 1000) / 1000:.3f}")
        if on_infeasible == "error":
            raise UserError(f"{message} (lower prune.ratio or set prune.on_infeasible: clamp)")
        warnings.warn(f"{message}; clamping those layers to min_channels", stacklevel=2)

    # Equal scores at the threshold (an untrained or un-sparsified model: every γ still 1.0) cannot
    # be ranked, and channels only go when strictly below it: say so instead of pruning less.
    below = int((all_scores < threshold).sum())
    tied = below < k
    if tied:
        ties = int((all_scores == threshold).sum())
        message = (f"prune.ratio={ratio}: {ties} of {len(all_scores)} prunable channels share |γ|={threshold:.4g}, "
                   f"so only {below / len(all_scores):.3f} of the channels rank below the threshold")
        if on_infeasible == "error":
            raise UserError(f"{message} (train with sparsity first, stages.sparse.sr > 0, or set "
                            f"prune.on_infeasible: clamp to prune only those)")
        warnings.warn(f"{message}; pruning only those", stacklevel=2)
    plan = plan_at_threshold(model, scored, threshold, min_channels=min_channels, round_to=round_to, tied=tied,
                             blocks=blocks)
    plan.ratio = ratio
    return plan


def _in_block(name: str, blocks: list[str]) -> bool:
    return any(name.startswith(block + ".") for block in blocks)


def _inner_groups(scored: Scored, names: dict[nn.Module, str], blocks: list[str]) -> dict[str, list[int]]:
    """{block: indices into `scored` of the groups whose every layer lies inside the block}
    (torch-pruning's own nodes for activations, adds and concats are not layers of the model)."""
    def inside(group, block: str) -> bool:
        return all(_in_block(names[dep.target.module], [block]) for dep, _ in group if dep.target.module in names)
    return {block: [i for i, (_, group, _) in enumerate(scored) if inside(group, block)] for block in blocks}


def plan_at_threshold(model: nn.Module, scored: Scored, threshold: float, *, min_channels: int = 8,
                      round_to: int = 1, tied: bool = False, blocks: list[str] = ()) -> PrunePlan:
    """Remove every channel whose group |γ| is below `threshold`, keeping at least min_channels
    per group (rounded up to round_to); `tied` marks groups with channels at the threshold.
    Of the residual `blocks` (Task.residual_blocks), those with every inner channel below the
    threshold are dropped, their inner groups with them."""
    names = {m: n for n, m in model.named_modules()}
    inner = _inner_groups(scored, names, blocks)
    plan = PrunePlan(ratio=None, threshold=threshold)
    plan.dropped = [b for b, idx in inner.items() if idx and all(bool((scored[i][2] < threshold).all()) for i in idx)]
    block_of = {g: b for b in plan.dropped for g in inner[b]}
    for g, (root, group, scores) in enumerate(scored):
        n = len(scores)
        n_below = int((scores < threshold).sum())
        block = block_of.get(g)
        keep_n = 0 if block else _kept(n, n_below, min_channels, round_to)
        remove = sorted(scores.argsort()[: n - keep_n].tolist())  # lowest scores go
        bns = {names[dep.target.module]: [idxs[i] for i in remove] for dep, idxs in group
               if isinstance(dep.target.module, _BN)}
        if block:
            plan.groups.append(GroupPlan(names[root], n, remove, bns, block=block))
            continue
        clamped = (["min_channels"] if n - n_below < min(min_channels, n) else []) + \
            (["tied γ"] if tied and bool((scores == threshold).any()) else [])
        root_name, root_remove = _surviving_root(group, names, plan.dropped, remove)
        plan.groups.append(GroupPlan(root_name, n, root_remove, bns, clamped))
    return plan


def _surviving_root(group, names: dict[nn.Module, str], dropped: list[str], remove: list[int]) -> tuple[str, list[int]]:
    """The first layer of `group` whose output channels it prunes and that no dropped block holds,
    with `remove` in its channel indices: a group shared by a block's output and its shortcut is
    rooted in the block's last conv, which may go with the block."""
    for dep, idxs in group:
        name = names.get(dep.target.module)
        if (name and isinstance(dep.target.module, (nn.Conv2d, nn.Linear)) and dep.handler.__name__ == "prune_out_channels"
                and not _in_block(name, dropped)):
            return name, [idxs[i] for i in remove]
    raise AssertionError("a group with no layer outside the dropped blocks is one of their inner groups")


@torch.no_grad()
def apply_mask(model: nn.Module, plan: PrunePlan) -> nn.Module:
    """Zero γ and β of every planned channel: what the pruned network should compute."""
    modules = dict(model.named_modules())
    for group in plan.groups:
        for bn_name, idxs in group.bns.items():
            modules[bn_name].weight[idxs] = 0
            modules[bn_name].bias[idxs] = 0
    return drop_blocks(model, plan.dropped)


def drop_blocks(model: nn.Module, blocks: list[str]) -> nn.Module:
    """Replace the named residual blocks by the identity, in place (a checkpoint's arch["dropped"])."""
    for name in blocks:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.Identity())
    return model


def prune_model(model: nn.Module, example: Inputs, plan: PrunePlan) -> nn.Module:
    """Drop the planned blocks and remove the planned channels in place (torch-pruning handles
    every coupled layer)."""
    graph = dependency_graph(drop_blocks(model, plan.dropped), example)
    modules = dict(model.named_modules())
    for group in plan.groups:
        if group.remove and group.block is None:
            root = modules[group.root]
            pruner = graph.get_pruner_of_module(root)
            graph.get_pruning_group(root, pruner.prune_out_channels, idxs=group.remove).prune()
    return model
