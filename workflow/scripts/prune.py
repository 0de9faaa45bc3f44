"""Snakemake adapter for pipeline_lib.steps.prune_stage (its arguments: pipeline_lib.jobs)."""
from pipeline_lib.steps import prune_stage
from pipeline_lib.runner import run_step

if __name__ == "__main__":
    run_step(snakemake, prune_stage)
