# slimflow: network slimming of vision models, one file per step (see README.md).
import os

from snakemake.utils import min_version

min_version("8.20")


# The default experiment, config/config.yaml of the working directory. With --directory RUN and no
# --configfile, a RUN without its own config/config.yaml uses the repository's (README: runs side by side).
here_or_beside_workflow = (
    "config/config.yaml"
    if os.path.exists("config/config.yaml") or workflow.overwrite_configfiles
    else os.path.join(workflow.basedir, "config/config.yaml")
)


configfile: here_or_beside_workflow


# The HTML report's first page: the run's summary written by the report rule, else the chain alone.
report_page = os.path.abspath("results/report.rst")


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
