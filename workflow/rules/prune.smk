# Seconds-long steps run beside Snakemake itself: a cluster never queues a job for them.
localrules:
    prune,


rule prune:
    input:
        unpack(parent_checkpoint),
    output:
        checkpoint="results/{lineage}pruned.pt",
        report="results/{lineage}prune.json",
    log:
        "results/{lineage}logs/prune.log",
    benchmark:
        "results/{lineage}benchmarks/prune.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        prune=lambda wildcards: slim_chain.prune_settings(wildcards.lineage, config["prune"]),
    threads: 1
    script:
        "../scripts/prune.py"
