import sys
from pathlib import Path

from pipeline_lib import chain as slim_chain  # not `chain`: Snakefile globals would shadow itertools.chain
from pipeline_lib import jobs
from pipeline_lib.config import TRAINED_STAGES, read_config_files, validate_config
from pipeline_lib.errors import UserError
from pipeline_lib.layout import DEPLOYED, EVALUATED, Artifact, DataFolder, Exported, Results

RESULTS = Results()  # the run's results folder (pipeline_lib.layout names every file in it)


def config_sources():
    """The config files in Snakemake's merge order: the Snakefile's `configfile:` first (unless
    --replace-workflow-config), then each --configfile in order; --config values go on top."""
    cli = [Path(p).absolute() for p in workflow.overwrite_configfiles]
    own = [Path(p).absolute() for p in workflow.configfiles if Path(p).absolute() not in cli]
    files = ([] if workflow.config_settings.replace_workflow_config else own) + cli
    return [p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p for p in files]  # as the user wrote them


# Validate before any job starts; a bad key ends the run with one line naming the file, line and key.
try:
    read_config_files(config_sources())  # Snakemake's loader keeps the last of a duplicated key
    config.update(validate_config(config, config_sources(), overrides=workflow.config_settings.config))
except UserError as error:
    sys.exit(f"slimflow config error: {error}")

# The dataset and every checkpoint under results/, checked before Snakemake deletes the previous
# outputs of any job it schedules (cached; in the main process only, not in each cluster job).
# Imported here, after the config passed: it loads torch, which a config mistake need not wait for.
from pipeline_lib.preflight import check_device, check_writable, preflight

if workflow.is_main_process:
    try:
        preflight(config, RESULTS.root, ".snakemake/slimflow/preflight.json")
    except UserError as error:
        sys.exit(f"slimflow error: {error}")


onstart:
    # Jobs run on this machine: the device they ask for must exist here (at parse time the
    # executor is not known yet, and a cluster node may have the GPU this machine lacks).
    try:
        check_writable(RESULTS.root)  # the folder every job writes in
    except UserError as error:
        sys.exit(f"slimflow error: {error}")
    if workflow.local_exec:
        try:
            check_device(config["device"])
        except UserError as error:
            sys.exit(f"slimflow error: {error}")


TRAINED = list(TRAINED_STAGES)
LORA = jobs.lora_stages(config)  # trained by rule train_lora
SWEEP = slim_chain.sweep_lineages(config["prune"])
# What a rule's output, log and benchmark patterns are made of (pipeline_lib.layout).
ARTIFACT, DATA, EXPORTED = Artifact("{lineage}", "{stage}"), DataFolder("{data}"), Exported("{prefix}", "{precision}")


def all_targets():
    """Every file the report writes (a missing one is rebuilt only when something asks for it), every exported
    model with its report, metrics and latency, the sweep's files, and every LoRA adapter."""
    targets = list(jobs.outputs("report", RESULTS).values()) + jobs.deployment_files(config, RESULTS.root)
    if SWEEP:
        targets += list(jobs.outputs("sweep_report", RESULTS).values())
    return targets + list(jobs.lora_adapters(config, RESULTS.root).values())


# The keys of each kind of job, from a job's wildcards.
def artifact(wildcards):
    return Artifact(wildcards.get("lineage", ""), wildcards.stage)


def pruned(wildcards):
    return Artifact(wildcards.lineage, "pruned")


def data_folder(wildcards):
    return DataFolder(wildcards.data)


def exported(wildcards):
    return Exported(wildcards.prefix, wildcards.precision)


def job_inputs(step, key=artifact):
    """A rule's input function: the files the step reads (pipeline_lib.jobs)."""
    return lambda wildcards: jobs.inputs(step, key(wildcards), config)


def job_params(step, key=artifact):
    """A rule's `args` param: the config values the step reads (a change reruns the job)."""
    return lambda wildcards: jobs.params(step, key(wildcards), config)


def adapters_read(step, key=artifact):
    """A rule's unnamed inputs: the adapter of each LoRA-trained checkpoint the step reads (pipeline_lib.jobs)."""
    return lambda wildcards: jobs.adapters_read(step, key(wildcards), config)


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing at all when there are none)."""
    return "|".join(names) if names else "(?!)"
