rule evaluate:
    input:
        unpack(job_inputs("evaluate")),
        adapters_read("evaluate"),
    output:
        **jobs.outputs("evaluate", ARTIFACT),
    log:
        ARTIFACT.log("evaluate"),
    benchmark:
        ARTIFACT.benchmark("evaluate")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("evaluate"),
    threads: 2
    script:
        "../scripts/evaluate.py"
