rule prepare_dataset:
    output:
        manifest="results/data/dataset.json",
    log:
        "results/logs/prepare_dataset.log",
    benchmark:
        "results/benchmarks/prepare_dataset.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        dataset=config["dataset"],
        task=config["task"],
        seed=config["seed"],
    script:
        "../scripts/prepare_dataset.py"
