rule train:
    input:
        unpack(parent_checkpoint),
        unpack(distill_teacher),
        manifest=stage_manifest,
    output:
        checkpoint="results/{lineage}{stage}.pt",
        csv="results/{lineage}train/{stage}.csv",
    log:
        "results/{lineage}logs/train-{stage}.log",
    benchmark:
        "results/{lineage}benchmarks/train-{stage}.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        label=artifact_label,
        train=train_params,
        validation=validation_settings(config),
        model=config["model"],
        task=config["task"],
        seed=config["seed"],
        device=config["device"],
        workdir=lambda wildcards: f"results/{wildcards.lineage}work/{wildcards.stage}",
    threads: workflow.cores
    resources:
        mem_mb=8000,
    wildcard_constraints:
        stage=one_of([stage for stage in TRAINED if stage not in LORA]),
    script:
        "../scripts/train.py"


# The same step for a stage with `lora:` — it also writes the adapter alone beside the merged checkpoint.
use rule train as train_lora with:
    output:
        checkpoint="results/{lineage}{stage}.pt",
        csv="results/{lineage}train/{stage}.csv",
        adapter="results/{lineage}{stage}.lora.pt",
    log:
        "results/{lineage}logs/train-{stage}.log",
    benchmark:
        "results/{lineage}benchmarks/train-{stage}.tsv"
    wildcard_constraints:
        stage=one_of(LORA),
