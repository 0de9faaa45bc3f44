"""Snakemake adapter for pipeline_lib.steps.report."""
from pathlib import Path

from pipeline_lib.runner import run_logged
from pipeline_lib.steps import report

if __name__ == "__main__":
    run_logged(snakemake.log[0], report, metrics_paths=list(snakemake.input.metrics),
               latency_paths=list(snakemake.input.latency),
               checkpoints=list(snakemake.input.checkpoints),
               gamma_checkpoints={"baseline": snakemake.input.baseline, "sparse": snakemake.input.sparse},
               curves={Path(path).stem: path for path in snakemake.input.curves},
               out_csv=snakemake.output.csv, out_md=snakemake.output.md, out_provenance=snakemake.output.provenance,
               out_gamma_png=snakemake.output.gamma, out_curves_png=snakemake.output.curves,
               out_latency_png=snakemake.output.latency, prune_report=snakemake.input.prune,
               out_page=snakemake.output.page, manifest_path=snakemake.input.manifest,
               predictions={Path(path).name.split(".")[0]: path for path in snakemake.input.predictions},
               sweep_metrics=list(snakemake.input.sweep), out_channels_png=snakemake.output.channels,
               out_pareto_png=snakemake.output.pareto, out_evaluation_dir=snakemake.output.evaluation,
               out_samples_dir=snakemake.output.samples)
