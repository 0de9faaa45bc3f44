rule evaluate:
    input:
        checkpoint="results/{lineage}{stage}.pt",
        manifest=stage_manifest,
        evaluator=stage_evaluator,
    output:
        metrics="results/{lineage}metrics/{stage}.json",
        predictions="results/{lineage}metrics/{stage}.predictions.json",
    log:
        "results/{lineage}logs/evaluate-{stage}.log",
    benchmark:
        "results/{lineage}benchmarks/evaluate-{stage}.tsv"
    conda:
        "../envs/slimflow.yaml"
    params:
        label=artifact_label,
        evaluate=config["evaluate"],
        device=config["device"],
        seed=config["seed"],
    threads: 2
    script:
        "../scripts/evaluate.py"
