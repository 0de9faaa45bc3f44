# results/data/dataset.json is the experiment's data; results/data/finetune/dataset.json the
# finetune's own (stages.finetune.dataset), when it has one.
rule prepare_dataset:
    output:
        manifest="results/data/{data}dataset.json",
    log:
        "results/logs/{data}prepare_dataset.log",
    benchmark:
        "results/benchmarks/{data}prepare_dataset.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        dataset=lambda wildcards: slim_chain.dataset_settings(wildcards.data, config)[0],
        task=config["task"],
        seed=lambda wildcards: slim_chain.dataset_settings(wildcards.data, config)[1],
    wildcard_constraints:
        data=slim_chain.DATA_PATTERN,
    script:
        "../scripts/prepare_dataset.py"


# A family that scores stages with a model of its own (diffusion: the digit judge) trains it once
# per dataset, beside the manifest.
rule train_evaluator:
    input:
        manifest="results/data/{data}dataset.json",
    output:
        evaluator="results/data/{data}evaluator.pt",
        report="results/data/{data}evaluator.json",
    log:
        "results/logs/{data}train_evaluator.log",
    benchmark:
        "results/benchmarks/{data}train_evaluator.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        evaluate=config["evaluate"],
        device=config["device"],
        seed=config["seed"],
    threads: 2
    wildcard_constraints:
        data=slim_chain.DATA_PATTERN,
    script:
        "../scripts/train_evaluator.py"
