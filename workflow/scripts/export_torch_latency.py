"""Snakemake adapter for pipeline_lib.export.torch_latency_stage."""
from pipeline_lib.export import torch_latency_stage
from pipeline_lib.runner import run_logged

if __name__ == "__main__":
    run_logged(snakemake.log[0], torch_latency_stage, checkpoint=snakemake.input.checkpoint,
               export_cfg=snakemake.params.export, out_json=snakemake.output.latency, seed=snakemake.params.seed)
