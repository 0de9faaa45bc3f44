# Seconds-long steps run beside Snakemake itself: a cluster never queues a job for them.
localrules:
    prune,


rule prune:
    input:
        unpack(job_inputs("prune", pruned)),
        adapters_read("prune", pruned),
    output:
        **jobs.outputs("prune", Artifact("{lineage}", "pruned")),
    log:
        Artifact("{lineage}", "").log("prune"),
    benchmark:
        Artifact("{lineage}", "").benchmark("prune")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("prune", pruned),
    # A latency or speedup target times probes in ONNX Runtime with export.threads.
    threads: lambda wildcards: jobs.params("prune", pruned(wildcards), config)["prune_cfg"].get("threads", 1)
    script:
        "../scripts/prune.py"
