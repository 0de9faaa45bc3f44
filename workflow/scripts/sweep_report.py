"""Snakemake adapter for pipeline_lib.steps.sweep_report (its arguments: pipeline_lib.jobs)."""
from pipeline_lib.steps import sweep_report
from pipeline_lib.runner import run_step

if __name__ == "__main__":
    run_step(snakemake, sweep_report)
