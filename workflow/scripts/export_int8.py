"""Snakemake adapter for pipeline_lib.export.quantize_stage."""
from pipeline_lib.export import quantize_stage
from pipeline_lib.runner import run_logged

if __name__ == "__main__":
    run_logged(snakemake.log[0], quantize_stage, onnx_path=snakemake.input.onnx, report_path=snakemake.input.report,
               manifest_path=snakemake.input.manifest, export_cfg=snakemake.params.export,
               out_onnx=snakemake.output.onnx, out_report=snakemake.output.report, seed=snakemake.params.seed)
