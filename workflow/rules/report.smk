rule report:
    input:
        metrics=expand("results/metrics/{stage}.json", stage=EVALUATED),
        baseline="results/baseline.pt",
        sparse="results/sparse.pt",
    output:
        csv="results/summary.csv",
        md="results/summary.md",
        gamma=report("results/plots/bn_gamma.png", category="slimming"),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../envs/slimflow.yaml"
    threads: 1
    script:
        "../scripts/report.py"
