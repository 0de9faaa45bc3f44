rule train:
    input:
        unpack(parent_checkpoint),
        manifest="results/data/dataset.json",
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
        model=config["model"],
        task=config["task"],
        seed=config["seed"],
        device=config["device"],
        workdir=lambda wildcards: f"results/{wildcards.lineage}work/{wildcards.stage}",
    threads: workflow.cores
    resources:
        mem_mb=8000,
    wildcard_constraints:
        stage="|".join(TRAINED),
    script:
        "../scripts/train.py"
