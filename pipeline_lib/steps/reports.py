"""The report steps: summary.csv/.md, provenance.json, the plots and the HTML report's first page;
the sweep's summary.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..io import read_json, write_text
from ..provenance import provenance_markdown, write_provenance
from ..report import (plot_gamma, plot_latency, plot_training_curves, primary_metric, summary_table, validation_metric,
                      write_sweep)
from ..summary import landing_page, write_summary
from ..report_plots import write_plots

__all__ = ["report", "sweep_report"]

log = logging.getLogger("slimflow")


def report(*, metrics_paths: list[str], latency_paths: list[str], checkpoints: list[str], curves: list[str],
           prune_report: str, manifest_path: str, predictions: list[str], sweep_metrics: list[str],
           out_csv: str, out_md: str, out_provenance: str, out_page: str, out_bn_gamma_png: str,
           out_training_curves_png: str, out_latency_png: str, out_channels_png: str, out_pareto_png: str,
           out_evaluation_dir: str, out_samples_dir: str, int8_max_drop: float | None = None) -> None:
    """summary.csv / summary.md (one row per artifact), provenance.json, the plots and the HTML
    report's first page (reStructuredText, with prune.json's requested and achieved ratio), from
    the files `jobs.inputs("report", ...)` lists: `checkpoints` are the summary's rows (the first
    two the baseline and the sparse model, whose |γ| are plotted), `curves` each trained stage's
    CSV (named by its stem), `predictions` each stage's evaluate predictions; sweep points that
    are not there yet are left out (a report by hand before the sweep ran). `int8_max_drop`, set
    with `export.int8: auto`, has summary.md say whether INT8 is kept (`export.int8_choice`)."""
    table = summary_table(metrics_paths, latency_paths)
    metric, prune = primary_metric(metrics_paths[0]), read_json(prune_report)
    record = write_provenance(checkpoints, out_provenance)
    write_summary(table, out_csv, out_md, sections={"Provenance": provenance_markdown(record)}, metric=metric,
                  prune_report=prune, int8_max_drop=int8_max_drop)
    write_text(out_page, landing_page(table, metric, prune))
    plot_gamma({Path(path).stem: path for path in checkpoints[:2]}, out_bn_gamma_png, threshold=prune["threshold"])
    curve_files = {Path(path).stem: path for path in curves}
    curve_metric = validation_metric(curve_files, metric)
    pruned = table.loc[table["stage"] == "pruned", curve_metric] if curve_metric in table else []
    plot_training_curves(curve_files, curve_metric, out_training_curves_png,
                         pruned=float(pruned.iloc[0]) if len(pruned) else None)
    plot_latency(table, out_latency_png)
    write_plots(table, metric, prune, manifest_path=manifest_path,
                predictions={Path(path).name.split(".")[0]: path for path in predictions},
                sweep_metrics=[path for path in sweep_metrics if Path(path).exists()],
                out_channels_png=out_channels_png, out_pareto_png=out_pareto_png,
                out_evaluation_dir=out_evaluation_dir, out_samples_dir=out_samples_dir)
    log.info("summary:\n%s", table.to_string(index=False))


def sweep_report(*, baseline_metrics: str | os.PathLike, pruned_metrics: list[str | os.PathLike],
                 finetuned_metrics: list[str | os.PathLike], out_csv: str | os.PathLike,
                 out_png: str | os.PathLike) -> None:
    """results/sweep/summary.csv and the accuracy-against-FLOPs plot of a prune-ratio sweep."""
    table = write_sweep(baseline_metrics, pruned_metrics, finetuned_metrics, out_csv, out_png)
    log.info("sweep:\n%s", table.to_string(index=False))
