import sys
from pathlib import Path

from pipeline_lib import chain as slim_chain  # not `chain`: Snakefile globals would shadow itertools.chain
from pipeline_lib.config import TRAINED_STAGES, read_config_files, stage_config, validate_config
from pipeline_lib.errors import UserError
from pipeline_lib.tasks import validation_settings


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
from pipeline_lib.preflight import check_device, preflight

if workflow.is_main_process:
    try:
        preflight(config, "results", ".snakemake/slimflow/preflight.json")
    except UserError as error:
        sys.exit(f"slimflow error: {error}")


onstart:
    # Jobs run on this machine: the device they ask for must exist here (at parse time the
    # executor is not known yet, and a cluster node may have the GPU this machine lacks).
    if workflow.local_exec:
        try:
            check_device(config["device"])
        except UserError as error:
            sys.exit(f"slimflow error: {error}")


TRAINED = list(TRAINED_STAGES)
# Trained artifacts whose stage trains LoRA adapters (rule train_lora, which also writes the adapter).
LORA = [stage for stage in TRAINED if stage_config(config, stage).get("lora")]
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
    return targets + lora_adapters()


def lora_adapters():
    """The adapter file of every artifact trained with LoRA, in every lineage. Asked for by name:
    Snakemake reruns a job for a missing output only when something needs that output."""
    adapters = []
    for lineage in [*ITERATIONS, "", *SWEEP]:
        # a sweep only finetunes; an iteration has no baseline of its own
        trained = {"": TRAINED, "sweep/": ["pruned_finetuned"]}.get(lineage[:6], ["sparse", "pruned_finetuned"])
        adapters += [f"results/{lineage}{stage}.lora.pt" for stage in trained if stage in LORA]
    return adapters


def artifact_label(wildcards):
    """How logs, metrics and checkpoint meta name an artifact: its lineage and stage."""
    return f"{wildcards.lineage}{wildcards.stage}"


def train_params(wildcards):
    return stage_config(config, wildcards.stage)


def stage_manifest(wildcards):
    """The dataset manifest an artifact trains, is evaluated and exported on."""
    return slim_chain.manifest(wildcards.stage, config)


def stage_evaluator(wildcards):
    """The family's evaluator an artifact is scored with (none for most families: an empty input)."""
    return slim_chain.evaluator(wildcards.stage, config) or []


def parent_checkpoint(wildcards):
    """The checkpoint an artifact starts from, as an `init` input (none when built from the config)."""
    path = slim_chain.parent(wildcards.lineage, wildcards.get("stage", "pruned"), config)
    if path is None and wildcards.get("stage") == "baseline" and config["model"].get("weights"):
        return {"weights": config["model"]["weights"]}  # the user's weights: a changed file retrains
    return {"init": path} if path else {}


def prune_settings(wildcards):
    """The prune step's ratio or target and guards in this lineage (export.threads for a timed target)."""
    return slim_chain.prune_settings(wildcards.lineage, config["prune"], config["export"]["threads"])


def distill_teacher(wildcards):
    """The finetune's teacher checkpoint with `stages.finetune.distill` (none otherwise): an input,
    so a retrained teacher reruns the finetune."""
    path = slim_chain.teacher(wildcards.lineage, wildcards.stage, config)
    return {"teacher": path} if path else {}


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing at all when there are none)."""
    return "|".join(names) if names else "(?!)"
