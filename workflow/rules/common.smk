import sys

from pipeline_lib.config import TRAINED_STAGES, stage_config, validate_config
from pipeline_lib.errors import UserError


# Validate before any job starts; a bad key ends the run with one line naming the file, line and key.
try:
    config.update(validate_config(config, workflow.configfiles))
except UserError as error:
    sys.exit(f"slimflow config error: {error}")


TRAINED = list(TRAINED_STAGES)
# Every artifact that gets results/metrics/{stage}.json.
EVALUATED = ["baseline", "sparse", "pruned", "pruned_finetuned"]


def all_targets():
    return ["results/summary.md", "results/plots/bn_gamma.png"]


def train_params(wildcards):
    return stage_config(config, wildcards.stage)


def train_init(wildcards):
    """The parent checkpoint a stage starts from (none for the baseline)."""
    if wildcards.stage == "sparse" and config["stages"]["sparse"]["init"] == "baseline":
        return {"init": "results/baseline.pt"}
    if wildcards.stage == "pruned_finetuned":
        return {"init": "results/pruned.pt"}
    return {}
