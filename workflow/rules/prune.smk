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
        prune=prune_settings,
    # A latency or speedup target times probes in ONNX Runtime with export.threads.
    threads: lambda wildcards: prune_settings(wildcards).get("threads", 1)
    script:
        "../scripts/prune.py"
