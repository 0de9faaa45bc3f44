# Deployment: ONNX export with an ONNX Runtime parity check, INT8 quantization, ORT evaluation
# and latency. Each rule gets the `export` keys it reads (pipeline_lib.export.settings), plus
# `evaluate` where it evaluates. results/metrics/onnx_fp32.json and onnx_int8.json describe the
# deployed model (pruned_finetuned); another stage's are results/metrics/<stage>.onnx_<precision>.json.
MAIN = Artifact("", "{stage}")  # exported models belong to the main chain


# Seconds-long steps run beside Snakemake itself: a cluster never queues a job for them.
localrules:
    export_onnx,
    quantize_int8,


rule export_onnx:
    input:
        unpack(job_inputs("export_onnx")),
        adapters_read("export_onnx"),
    output:
        **jobs.outputs("export_onnx", MAIN),
    log:
        MAIN.log("export_onnx"),
    benchmark:
        MAIN.benchmark("export_onnx")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("export_onnx"),
    threads: 1
    script:
        "../scripts/export_onnx.py"


rule quantize_int8:
    input:
        unpack(job_inputs("quantize_int8")),
    output:
        **jobs.outputs("quantize_int8", MAIN),
    log:
        MAIN.log("quantize_int8"),
    benchmark:
        MAIN.benchmark("quantize_int8")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("quantize_int8"),
    threads: 1
    script:
        "../scripts/export_int8.py"


rule evaluate_onnx:
    input:
        unpack(job_inputs("evaluate_onnx", exported)),
    output:
        **jobs.outputs("evaluate_onnx", EXPORTED),
    log:
        EXPORTED.log("evaluate_onnx"),
    benchmark:
        EXPORTED.benchmark("evaluate_onnx")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("evaluate_onnx", exported),
    # All cores: latency is timed with no other job running (it uses export.threads of them).
    threads: workflow.cores
    wildcard_constraints:
        prefix="(" + "".join(f"{stage}\\.|" for stage in EVALUATED if stage != DEPLOYED) + ")",
        precision="fp32|int8",
    script:
        "../scripts/export_evaluate.py"


rule latency_torch:
    input:
        unpack(job_inputs("latency_torch")),
        adapters_read("latency_torch"),
    output:
        **jobs.outputs("latency_torch", MAIN),
    log:
        MAIN.log("latency_torch"),
    benchmark:
        MAIN.benchmark("latency_torch")
    conda:
        "../envs/slimflow.yaml"
    params:
        args=job_params("latency_torch"),
    threads: workflow.cores
    script:
        "../scripts/export_torch_latency.py"
