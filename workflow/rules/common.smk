import sys

from pipeline_lib.config import stage_config, validate_config
from pipeline_lib.errors import UserError


# Validate before any job starts; a bad key ends the run with one line naming the file, line and key.
try:
    config.update(validate_config(config, workflow.configfiles))
except UserError as error:
    sys.exit(f"slimflow config error: {error}")


STAGES = ["baseline"]


def all_targets():
    return [f"results/metrics/{stage}.json" for stage in STAGES]


def train_params(wildcards):
    return stage_config(config, wildcards.stage)
