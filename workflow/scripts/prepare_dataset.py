"""Snakemake adapter for pipeline_lib.steps.prepare_dataset (its arguments: pipeline_lib.jobs)."""
from pipeline_lib.steps import prepare_dataset
from pipeline_lib.runner import run_step

if __name__ == "__main__":
    run_step(snakemake, prepare_dataset)
