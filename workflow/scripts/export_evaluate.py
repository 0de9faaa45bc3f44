"""Snakemake adapter for pipeline_lib.export.evaluate_onnx_stage (its arguments: pipeline_lib.jobs)."""
from pipeline_lib.steps import evaluate_onnx_stage
from pipeline_lib.runner import run_step

if __name__ == "__main__":
    # evaluation threads: the rule's (latency is timed with export.threads)
    run_step(snakemake, evaluate_onnx_stage, threads=snakemake.threads)
