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
