"""Snakemake adapter for pipeline_lib.steps.latency.torch_latency_stage (its arguments: pipeline_lib.jobs)."""
from pipeline_lib.steps import torch_latency_stage
from pipeline_lib.runner import run_step

if __name__ == "__main__":
    run_step(snakemake, torch_latency_stage)
