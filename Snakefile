# slimflow: network slimming of vision models, one file per step (see README.md).
import os
import sys

from snakemake.utils import min_version

from pipeline_lib.config import read_config_files
from pipeline_lib.errors import UserError

min_version("8.20")

# Read strictly first: Snakemake's loader reports a YAML mistake without the file or the line.
try:
    read_config_files([f for f in ["config/config.yaml"] if os.path.exists(f)])
except UserError as error:
    sys.exit(f"slimflow config error: {error}")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    stage="|".join(EVALUATED),
    lineage=slim_chain.LINEAGE_PATTERN,


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
