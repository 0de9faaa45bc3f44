# Seconds-long steps run beside Snakemake itself: a cluster never queues a job for them.
localrules:
    report,
    sweep_report,


rule report:
    input:
        metrics=[f"results/{lineage}metrics/{stage}.json" for lineage, stage in SUMMARY_ROWS]
        + export_paths.onnx_metrics(config["export"]),
        latency=export_paths.torch_latencies(),
        checkpoints=[f"results/{lineage}{stage}.pt" for lineage, stage in SUMMARY_ROWS],
        curves=expand("results/train/{stage}.csv", stage=TRAINED),
        baseline="results/baseline.pt",
        sparse="results/sparse.pt",
        prune="results/prune.json",
        manifest="results/data/dataset.json",
        predictions=expand("results/metrics/{stage}.predictions.json", stage=EVALUATED),
        sweep=expand("results/{lineage}metrics/pruned_finetuned.json", lineage=SWEEP),
    output:
        csv=report("results/summary.csv", caption="../report/summary.rst", category="1. summary"),
        md="results/summary.md",
        provenance=report("results/provenance.json", caption="../report/provenance.rst", category="1. summary"),
        page="results/report.rst",
        gamma=report("results/plots/bn_gamma.png", caption="../report/bn_gamma.rst", category="2. slimming"),
        curves=report(
            "results/plots/training_curves.png", caption="../report/training_curves.rst", category="3. training"
        ),
        latency=report("results/plots/latency.png", caption="../report/latency.rst", category="4. deployment"),
        channels=report("results/plots/channels.png", caption="../report/channels.rst", category="2. slimming"),
        pareto=report("results/plots/pareto.png", caption="../report/pareto.rst", category="4. deployment"),
        # The family's own figures and drawn val images: file names depend on the family.
        evaluation=report(
            directory("results/plots/evaluation"),
            patterns=["{figure}.png"],
            caption="../report/evaluation.rst",
            category="5. evaluation",
            labels={"figure": "{figure}"},
        ),
        samples=report(
            directory("results/plots/samples"),
            patterns=["{artifact}.png"],
            caption="../report/samples.rst",
            category="6. sample predictions",
            labels={"stage": "{artifact}"},
        ),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../envs/slimflow.yaml"
    threads: 1
    script:
        "../scripts/report.py"


rule sweep_report:
    input:
        baseline="results/metrics/baseline.json",
        pruned=expand("results/{lineage}metrics/pruned.json", lineage=SWEEP),
        finetuned=expand("results/{lineage}metrics/pruned_finetuned.json", lineage=SWEEP),
    output:
        csv="results/sweep/summary.csv",
        plot=report("results/plots/sweep.png", caption="../report/sweep.rst", category="2. slimming"),
    log:
        "results/logs/sweep_report.log",
    benchmark:
        "results/benchmarks/sweep_report.tsv"
    conda:
        "../envs/slimflow.yaml"
    threads: 1
    script:
        "../scripts/sweep_report.py"
