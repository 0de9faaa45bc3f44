"""Snakemake adapter for pipeline_lib.steps.prune_stage."""
from pipeline_lib.runner import run_logged
from pipeline_lib.steps import prune_stage

if __name__ == "__main__":
    run_logged(snakemake.log[0], prune_stage, checkpoint=snakemake.input.init,
               prune_cfg=snakemake.params.prune, out_checkpoint=snakemake.output.checkpoint,
               out_report=snakemake.output.report)
