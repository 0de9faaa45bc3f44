# Deployment: ONNX export with an ONNX Runtime parity check, INT8 quantization, ORT evaluation
# and latency. Each rule gets the `export` keys it reads (export_paths.RULE_KEYS), plus `evaluate`
# where it evaluates.
from pipeline_lib.export import paths as export_paths

# results/metrics/onnx_fp32.json and onnx_int8.json (issue 7's names) describe the deployed
# model (pruned_finetuned); another stage's are results/metrics/<stage>.onnx_<precision>.json.
# The report asks for them (export_paths.onnx_metrics / torch_latencies).


# Seconds-long steps run beside Snakemake itself: a cluster never queues a job for them.
localrules:
    export_onnx,
    quantize_int8,


rule export_onnx:
    input:
        checkpoint="results/{stage}.pt",
        manifest=stage_manifest,
    output:
        onnx="results/export/{stage}.onnx",
        report="results/export/{stage}.json",
    log:
        "results/logs/export_onnx-{stage}.log",
    benchmark:
        "results/benchmarks/export_onnx-{stage}.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        export=export_paths.rule_settings(config["export"], "export_onnx"),
        seed=config["seed"],
    threads: 1
    script:
        "../scripts/export_onnx.py"


rule quantize_int8:
    input:
        onnx="results/export/{stage}.onnx",
        report="results/export/{stage}.json",
        manifest=stage_manifest,
    output:
        onnx="results/export/{stage}.int8.onnx",
        report="results/export/{stage}.int8.json",
    log:
        "results/logs/quantize_int8-{stage}.log",
    benchmark:
        "results/benchmarks/quantize_int8-{stage}.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        export=export_paths.rule_settings(config["export"], "quantize_int8"),
        seed=config["seed"],
    threads: 1
    script:
        "../scripts/export_int8.py"


rule evaluate_onnx:
    input:
        unpack(lambda wildcards: export_paths.onnx_inputs(wildcards.prefix, wildcards.precision)),
        manifest=lambda wildcards: slim_chain.manifest(wildcards.prefix.rstrip(".") or export_paths.DEPLOYED, config),
        evaluator=lambda wildcards: slim_chain.evaluator(wildcards.prefix.rstrip(".") or export_paths.DEPLOYED, config)
        or [],
    output:
        metrics="results/metrics/{prefix}onnx_{precision}.json",
    log:
        "results/logs/evaluate_onnx-{prefix}{precision}.log",
    benchmark:
        "results/benchmarks/evaluate_onnx-{prefix}{precision}.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        evaluate=config["evaluate"],
        export=export_paths.rule_settings(config["export"], "latency"),
        seed=config["seed"],
    # All cores: latency is timed with no other job running (it uses export.threads of them).
    threads: workflow.cores
    wildcard_constraints:
        prefix=export_paths.prefix_pattern(EVALUATED),
        precision="fp32|int8",
    script:
        "../scripts/export_evaluate.py"


rule latency_torch:
    input:
        checkpoint="results/{stage}.pt",
    output:
        latency="results/latency/{stage}.torch.json",
    log:
        "results/logs/latency_torch-{stage}.log",
    benchmark:
        "results/benchmarks/latency_torch-{stage}.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        export=export_paths.rule_settings(config["export"], "latency"),
        seed=config["seed"],
    threads: workflow.cores
    script:
        "../scripts/export_torch_latency.py"
