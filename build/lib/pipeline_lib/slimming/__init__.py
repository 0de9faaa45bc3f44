"""Network slimming (Liu et al., ICCV 2017), model-family agnostic.

`sparsity` adds the L1 subgradient on BN scales during training and reports γ statistics;
`plan` turns a global |γ| threshold into per-group channel removals (with guards) and performs
the channel surgery through torch-pruning's dependency graph; `target` searches the threshold
that meets a FLOPs, latency or speedup target.
"""
from .plan import PrunePlan, apply_mask, drop_blocks, plan_at_threshold, plan_prune, prunable_bns, prune_model, score_groups
from .sparsity import L1Sparsity, gamma_stats

__all__ = ["PrunePlan", "plan_prune", "plan_at_threshold", "score_groups", "prunable_bns", "apply_mask", "drop_blocks", "prune_model", "L1Sparsity", "gamma_stats"]
