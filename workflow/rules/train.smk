rule train:
    input:
        unpack(job_inputs("train")),
        adapters_read("train"),
    output:
        **jobs.outputs("train", ARTIFACT),
    log:
        ARTIFACT.log("train"),
    benchmark:
        ARTIFACT.benchmark("train")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("train"),
    threads: workflow.cores
    resources:
        mem_mb=8000,
    wildcard_constraints:
        stage=one_of([stage for stage in TRAINED if stage not in LORA]),
    script:
        "../scripts/train.py"


# The same step for a stage with `lora:` — it also writes the adapter alone beside the merged checkpoint.
use rule train as train_lora with:
    output:
        **jobs.outputs("train_lora", ARTIFACT),
    wildcard_constraints:
        stage=one_of(LORA),
