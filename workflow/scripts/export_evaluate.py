"""Snakemake adapter for pipeline_lib.export.evaluate_onnx_stage."""
from pipeline_lib.export import evaluate_onnx_stage
from pipeline_lib.runner import run_logged

if __name__ == "__main__":
    run_logged(snakemake.log[0], evaluate_onnx_stage, onnx_path=snakemake.input.onnx,
               report_path=snakemake.input.report, manifest_path=snakemake.input.manifest,
               eval_cfg=snakemake.params.evaluate, export_cfg=snakemake.params.export, seed=snakemake.params.seed,
               threads=snakemake.threads, out_metrics=snakemake.output.metrics,
               evaluator=snakemake.input.get("evaluator"))
