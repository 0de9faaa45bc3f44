import sys

from pipeline_lib import chain as slim_chain  # not `chain`: Snakefile globals would shadow itertools.chain
from pipeline_lib.config import TRAINED_STAGES, stage_config, validate_config
from pipeline_lib.errors import UserError

# Validate before any job starts; a bad key ends the run with one line naming the file, line and key.
try:
    config.update(validate_config(config, workflow.configfiles))
except UserError as error:
    sys.exit(f"slimflow config error: {error}")


TRAINED = list(TRAINED_STAGES)
# Every artifact that gets results/{lineage}metrics/{stage}.json.
EVALUATED = ["baseline", "sparse", "pruned", "pruned_finetuned"]
ITERATIONS = slim_chain.iteration_lineages(config["prune"])[:-1]  # earlier iterations; the last is the main chain
SWEEP = slim_chain.sweep_lineages(config["prune"])
# Rows of results/summary.*: the main chain's stages, then each earlier iteration's slim model.
SUMMARY_ROWS = [("", stage) for stage in EVALUATED] + [(lineage, "pruned_finetuned") for lineage in ITERATIONS]


def all_targets():
    targets = [
        "results/summary.md",
        "results/plots/bn_gamma.png",
        "results/plots/training_curves.png",
        "results/plots/latency.png",
    ]
    if SWEEP:
        targets += ["results/sweep/summary.csv", "results/plots/sweep.png"]
    return targets


def artifact_label(wildcards):
    """How logs, metrics and checkpoint meta name an artifact: its lineage and stage."""
    return f"{wildcards.lineage}{wildcards.stage}"


def train_params(wildcards):
    return stage_config(config, wildcards.stage)


def parent_checkpoint(wildcards):
    """The checkpoint an artifact starts from, as an `init` input (none when built from the config)."""
    path = slim_chain.parent(wildcards.lineage, wildcards.get("stage", "pruned"), config)
    return {"init": path} if path else {}
