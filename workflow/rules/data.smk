# results/data/dataset.json is the experiment's data; results/data/finetune/dataset.json the
# finetune's own (stages.finetune.dataset), when it has one. Paths and arguments: pipeline_lib.jobs.
rule prepare_dataset:
    output:
        **jobs.outputs("prepare_dataset", DATA),
    log:
        DATA.log("prepare_dataset"),
    benchmark:
        DATA.benchmark("prepare_dataset")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("prepare_dataset", data_folder),
    wildcard_constraints:
        data=slim_chain.DATA_PATTERN,
    script:
        "../scripts/prepare_dataset.py"


# A family that scores stages with a model of its own (diffusion: the digit judge) trains it once
# per dataset, beside the manifest.
rule train_evaluator:
    input:
        unpack(job_inputs("train_evaluator", data_folder)),
    output:
        **jobs.outputs("train_evaluator", DATA),
    log:
        DATA.log("train_evaluator"),
    benchmark:
        DATA.benchmark("train_evaluator")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("train_evaluator", data_folder),
    threads: 2
    wildcard_constraints:
        data=slim_chain.DATA_PATTERN,
    script:
        "../scripts/train_evaluator.py"
