# Seconds-long steps run beside Snakemake itself: a cluster never queues a job for them.
localrules:
    report,
    sweep_report,


REPORT = jobs.outputs("report", RESULTS)  # every file the report writes, by its step's argument name


rule report:
    input:
        **jobs.inputs("report", RESULTS, config),
    output:
        out_csv=report(REPORT["out_csv"], caption="../report/summary.rst", category="1. summary"),
        out_md=REPORT["out_md"],
        out_provenance=report(REPORT["out_provenance"], caption="../report/provenance.rst", category="1. summary"),
        out_page=REPORT["out_page"],
        out_bn_gamma_png=report(REPORT["out_bn_gamma_png"], caption="../report/bn_gamma.rst", category="2. slimming"),
        out_gamma_quantiles_png=report(
            REPORT["out_gamma_quantiles_png"], caption="../report/gamma_quantiles.rst", category="2. slimming"
        ),
        out_training_curves_png=report(
            REPORT["out_training_curves_png"], caption="../report/training_curves.rst", category="3. training"
        ),
        out_latency_png=report(REPORT["out_latency_png"], caption="../report/latency.rst", category="4. deployment"),
        out_channels_png=report(REPORT["out_channels_png"], caption="../report/channels.rst", category="2. slimming"),
        out_pareto_png=report(REPORT["out_pareto_png"], caption="../report/pareto.rst", category="4. deployment"),
        out_training_dir=report(
            directory(REPORT["out_training_dir"]),
            patterns=["{stage}.png"],
            caption="../report/training.rst",
            category="3. training",
            labels={"stage": "{stage}"},
        ),
        # The family's own figures and drawn val images: file names depend on the family.
        out_evaluation_dir=report(
            directory(REPORT["out_evaluation_dir"]),
            patterns=["{figure}.png"],
            caption="../report/evaluation.rst",
            category="5. evaluation",
            labels={"figure": "{figure}"},
        ),
        out_samples_dir=report(
            directory(REPORT["out_samples_dir"]),
            patterns=["{artifact}.png"],
            caption="../report/samples.rst",
            category="6. sample predictions",
            labels={"stage": "{artifact}"},
        ),
    log:
        RESULTS.log("report"),
    benchmark:
        RESULTS.benchmark("report")
    conda:
        "../envs/slimflow.yaml"
    threads: 1
    script:
        "../scripts/report.py"


rule sweep_report:
    input:
        **jobs.inputs("sweep_report", RESULTS, config),
    output:
        out_csv=jobs.outputs("sweep_report", RESULTS)["out_csv"],
        out_png=report(
            jobs.outputs("sweep_report", RESULTS)["out_png"], caption="../report/sweep.rst", category="2. slimming"
        ),
    log:
        RESULTS.log("sweep_report"),
    benchmark:
        RESULTS.benchmark("sweep_report")
    conda:
        "../envs/slimflow.yaml"
    threads: 1
    script:
        "../scripts/sweep_report.py"
