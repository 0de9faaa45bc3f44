rule train:
    input:
        unpack(train_init),
        manifest="results/data/dataset.json",
    output:
        checkpoint="results/{stage}.pt",
        csv="results/train/{stage}.csv",
    log:
        "results/logs/train-{stage}.log",
    benchmark:
        "results/benchmarks/train-{stage}.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        train=train_params,
        model=config["model"],
        task=config["task"],
        seed=config["seed"],
        device=config["device"],
        workdir=lambda wildcards: f"results/work/{wildcards.stage}",
    threads: workflow.cores
    resources:
        mem_mb=8000,
    wildcard_constraints:
        stage="|".join(TRAINED),
    script:
        "../scripts/train.py"
