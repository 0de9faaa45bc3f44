"""Snakemake adapter for pipeline_lib.export.export_stage."""
from pipeline_lib.export import export_stage
from pipeline_lib.runner import run_logged

if __name__ == "__main__":
    run_logged(snakemake.log[0], export_stage, checkpoint=snakemake.input.checkpoint,
               manifest_path=snakemake.input.manifest, export_cfg=snakemake.params.export,
               out_onnx=snakemake.output.onnx, out_report=snakemake.output.report, seed=snakemake.params.seed)
