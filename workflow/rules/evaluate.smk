rule evaluate:
    input:
        checkpoint="results/{stage}.pt",
        manifest="results/data/dataset.json",
    output:
        metrics="results/metrics/{stage}.json",
        predictions="results/metrics/{stage}.predictions.json",
    log:
        "results/logs/evaluate-{stage}.log",
    benchmark:
        "results/benchmarks/evaluate-{stage}.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        evaluate=config["evaluate"],
        device=config["device"],
        seed=config["seed"],
    threads: 2
    script:
        "../scripts/evaluate.py"
