"""Snakemake adapter for pipeline_lib.steps.sweep_report."""
from pipeline_lib.runner import run_logged
from pipeline_lib.steps import sweep_report

if __name__ == "__main__":
    run_logged(snakemake.log[0], sweep_report, baseline_metrics=snakemake.input.baseline,
               pruned_metrics=list(snakemake.input.pruned), finetuned_metrics=list(snakemake.input.finetuned),
               out_csv=snakemake.output.csv, out_png=snakemake.output.plot)
