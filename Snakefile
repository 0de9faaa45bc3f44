# slimflow: network slimming of vision models, one file per step (see README.md).
import os
import sys

from snakemake.utils import min_version

from pipeline_lib.config import read_config_files
from pipeline_lib.errors import UserError
from pipeline_lib.layout import Results

min_version("8.20")


# The default experiment, config/config.yaml, unless --configfile names the experiment (one or more
# files, later ones winning): a ReID or pose config cannot be laid over the detector's. With
# --directory RUN, RUN/config/config.yaml if it has one, else the repository's (README).
# Used as a module (docs/DEPLOY.md), the user's Snakefile names the config (`configfile:` and
# `config: config`): Snakemake skips this file's `configfile:` then, and nothing is read here.
default_config = (
    "config/config.yaml"
    if os.path.exists("config/config.yaml")
    else workflow.current_basedir.join("config/config.yaml").get_path_or_uri(secret_free=True)
)
if not workflow.overwrite_configfiles and not workflow.configfiles:
    # Read strictly first: Snakemake's loader reports a YAML mistake without the file or the line.
    try:
        read_config_files([default_config])
    except UserError as error:
        sys.exit(f"slimflow config error: {error}")

    configfile: default_config


# The HTML report's first page: the run's summary written by the report rule (under the working
# directory: the user's), else the chain alone (a path relative to this file, as in a module).
report_page = os.path.abspath(Results().report_page)


report: report_page if os.path.exists(report_page) else "workflow/report/workflow.rst"


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
    default_target: True
    input:
        all_targets(),
