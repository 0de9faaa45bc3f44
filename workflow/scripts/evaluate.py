"""Snakemake adapter for pipeline_lib.steps.evaluate_stage."""
from pipeline_lib.runner import run_logged
from pipeline_lib.steps import evaluate_stage

if __name__ == "__main__":
    run_logged(snakemake.log[0], evaluate_stage, label=snakemake.params.label,
               checkpoint=snakemake.input.checkpoint, manifest_path=snakemake.input.manifest,
               eval_cfg=snakemake.params.evaluate, device=snakemake.params.device,
               seed=snakemake.params.seed, out_metrics=snakemake.output.metrics,
               out_predictions=snakemake.output.predictions,
               evaluator=snakemake.input.get("evaluator"))
