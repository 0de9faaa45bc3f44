rule prune:
    input:
        checkpoint="results/sparse.pt",
    output:
        checkpoint="results/pruned.pt",
        report="results/prune.json",
    log:
        "results/logs/prune.log",
    benchmark:
        "results/benchmarks/prune.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        prune=config["prune"],
    threads: 1
    script:
        "../scripts/prune.py"
