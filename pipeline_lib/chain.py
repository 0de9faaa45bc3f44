"""Which artifact of the slimming chain each one starts from, and with which prune settings.

One chain (sparse → prune → finetune) lives under a *lineage* prefix of `results/`:

    ""              the main chain: results/sparse.pt, results/pruned.pt, results/pruned_finetuned.pt
    "iter/2/"       iteration 2 of `prune.iterations: k` (1..k-1; the last iteration is the main chain)
    "sweep/r0.3/"   one ratio of `prune.sweep` (pruned from the main chain's sparse.pt), or one
                    target: "sweep/flops0.3/", "sweep/speedup2.5/", "sweep/latency_ms1.5/"

The rules are written once with `results/{lineage}...` paths (`pipeline_lib.layout`); these
functions answer the questions their inputs ask (`pipeline_lib.jobs`), unit-tested without Snakemake.

    parent("iter/2/", "sparse", cfg)   # -> Artifact("iter/1/", "pruned_finetuned")
    teacher("sweep/r0.3/", "pruned_finetuned", cfg)   # stages.finetune.distill on: Artifact("", "sparse")
    prune_settings("sweep/r0.3/", cfg["prune"])["ratio"]  # -> 0.3
"""
from __future__ import annotations

import re

from .layout import Artifact
from .targets import is_timed, target_kind
from .widths import resolve_round_to

__all__ = ["LINEAGE_PATTERN", "DATA_PATTERN", "iteration_lineages", "sweep_lineages", "sweep_lineage", "sweep_point",
           "sweep_label", "parent", "teacher", "prune_settings", "iteration_ratios", "data_folder", "dataset_settings"]

# Snakemake wildcard constraint for {lineage}; the empty alternative is the main chain.
LINEAGE_PATTERN = r"(|iter/[1-9][0-9]*/|sweep/(r0\.[0-9]+|flops0\.[0-9]+|speedup[0-9.]+|latency_ms[0-9.]+)/)"
# ... and for {data} in results/data/{data}dataset.json: the experiment's data, or the finetune's own.
DATA_PATTERN = r"(|finetune/)"


def iteration_ratios(prune_cfg: dict) -> list[float]:
    """The ratio of each iteration: `ratio` repeated, or the list given (validated to length k)."""
    ratio, k = prune_cfg["ratio"], prune_cfg["iterations"]
    return list(ratio) if isinstance(ratio, list) else [ratio] * k


def iteration_lineages(prune_cfg: dict) -> list[str]:
    """Lineages of every iteration in order; the last one is the main chain ("")."""
    return [f"iter/{i}/" for i in range(1, prune_cfg["iterations"])] + [""]


def sweep_lineage(point: float | dict) -> str:
    """The folder of one sweep point: a ratio (0.3 -> sweep/r0.3/) or a target ({flops: 0.3} -> sweep/flops0.3/)."""
    if isinstance(point, dict):
        kind, value = target_kind(point)
        return f"sweep/{kind}{value:g}/"
    return f"sweep/r{point:g}/"


def sweep_point(path: str) -> tuple[str, float]:
    """("ratio" or the target's key, value) of a sweep lineage, or of any path or label that starts with one."""
    kind, value = re.match(r"sweep/(r|flops|speedup|latency_ms)([0-9.]+)/", path).groups()
    return ("ratio" if kind == "r" else kind), float(value)


def sweep_label(path: str) -> str:
    """How plots and tables name a sweep point: "r=0.3", "flops=0.3", "speedup=2.5"."""
    kind, value = sweep_point(path)
    return f"{'r' if kind == 'ratio' else kind}={value:g}"


def sweep_lineages(prune_cfg: dict) -> list[str]:
    return [sweep_lineage(r) for r in prune_cfg["sweep"]]


def _iteration(lineage: str, prune_cfg: dict) -> int:
    """1-based iteration number of a main-chain or iteration lineage."""
    if lineage == "":
        return prune_cfg["iterations"]
    return int(re.fullmatch(r"iter/(\d+)/", lineage).group(1))


def prune_settings(lineage: str, prune_cfg: dict, threads: int = 1, deploy_imgsz: list | None = None,
                   quantize: dict | None = None, finetune_act: str | None = None) -> dict:
    """What `prune` needs in one lineage: its ratio or target and the guards (not `iterations`/`sweep`,
    so adding a sweep ratio does not rerun the main chain's prune). `threads` (export.threads),
    `deploy_imgsz` (export.deploy.imgsz, where a timed target is measured by default) and
    `finetune_act` (stages.finetune.act: each candidate is timed with the activation it will be
    deployed with) only with a timed target: a FLOPs target or a ratio does not depend on them;
    `quantize` (the quantize_int8 step's export keys) as "int8_quantize" only with a target that
    counts INT8. `drop_blocks` only when set, so that runs from before the key keep their params
    (and are not pruned again)."""
    guards = {k: prune_cfg[k] for k in ("min_channels", "on_infeasible")} | {"round_to": resolve_round_to(prune_cfg["round_to"])}
    if prune_cfg.get("drop_blocks"):
        guards["drop_blocks"] = True
    if lineage.startswith("sweep/"):
        point = next(p for p in prune_cfg["sweep"] if sweep_lineage(p) == lineage)
        target = point if isinstance(point, dict) else None
        ratio = None if target else point
    else:
        target = prune_cfg.get("target")
        ratio = None if target else iteration_ratios(prune_cfg)[_iteration(lineage, prune_cfg) - 1]
    if target:
        timed = {"threads": threads, "deploy_imgsz": deploy_imgsz} if is_timed(target) else {}
        timed |= {"int8_quantize": quantize} if timed and target.get("int8") else {}
        timed |= {"finetune_act": finetune_act} if timed and finetune_act else {}
        return {"ratio": None, "target": target, **guards, **timed}
    return {"ratio": ratio, **guards}


def parent(lineage: str, artifact: str, config: dict) -> Artifact | None:
    """The artifact `{lineage}{artifact}` starts from (None: built from the config)."""
    if artifact == "baseline":
        return None
    if artifact == "pruned_finetuned":
        return Artifact(lineage, "pruned")
    if artifact == "pruned":  # a sweep prunes the main chain's sparsity-trained model
        return Artifact("" if lineage.startswith("sweep/") else lineage, "sparse")
    if artifact == "sparse":
        i = _iteration(lineage, config["prune"])
        if i > 1:  # later iterations continue from the previous slim model
            return Artifact(iteration_lineages(config["prune"])[i - 2], "pruned_finetuned")
        return Artifact("", "baseline") if config["stages"]["sparse"]["init"] == "baseline" else None
    raise ValueError(f"unknown artifact {artifact!r}")


def teacher(lineage: str, artifact: str, config: dict) -> Artifact | None:
    """The artifact that teaches `{lineage}{artifact}` (`stages.finetune.distill`; None: no
    distillation): the lineage's sparsity-trained model — the one its pruned model was cut from —
    or the experiment's only baseline."""
    distill = config["stages"]["finetune"].get("distill")
    if artifact != "pruned_finetuned" or not distill:
        return None
    return Artifact("", "baseline") if distill["teacher"] == "baseline" else parent(lineage, "pruned", config)


def data_folder(artifact: str, config: dict) -> str:
    """The data an artifact trains and is evaluated on, under results/data/: "" (the experiment's)
    or "finetune/" (`stages.finetune.dataset`, e.g. a site's data, for every finetuned artifact)."""
    return "finetune/" if artifact == "pruned_finetuned" and config["stages"]["finetune"].get("dataset") else ""


def dataset_settings(folder: str, config: dict) -> tuple[dict, int]:
    """(dataset section, seed) that prepare-dataset uses for a data folder: the finetune's keys
    laid over the experiment's, and another seed, so a second embedded dataset is a new draw."""
    if folder == "":
        return config["dataset"], config["seed"]
    own = config["stages"]["finetune"]["dataset"]
    merged = {**config["dataset"], **own, "synthetic": {**config["dataset"]["synthetic"], **own.get("synthetic", {})}}
    return merged, (config["seed"] + 1) % 2**32
