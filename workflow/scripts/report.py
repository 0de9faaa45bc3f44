"""Snakemake adapter for pipeline_lib.steps.report (its arguments: pipeline_lib.jobs)."""
from pipeline_lib.steps import report
from pipeline_lib.runner import run_step

if __name__ == "__main__":
    run_step(snakemake, report)
