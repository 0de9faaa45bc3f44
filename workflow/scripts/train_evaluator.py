"""Snakemake adapter for pipeline_lib.steps.train_evaluator."""
from pipeline_lib.runner import run_logged
from pipeline_lib.steps import train_evaluator

if __name__ == "__main__":
    run_logged(snakemake.log[0], train_evaluator, manifest_path=snakemake.input.manifest,
               eval_cfg=snakemake.params.evaluate, device=snakemake.params.device, seed=snakemake.params.seed,
               out_evaluator=snakemake.output.evaluator, out_report=snakemake.output.report)
