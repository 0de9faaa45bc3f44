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
from ..report_plots import write_plots
from ..report_training import write_training_plots
from ..summary import landing_page, write_summary
from ..tasks import get_task

__all__ = ["report", "sweep_report"]

log = logging.getLogger("slimflow")


def report(*, metrics_paths: list[str], latency_paths: list[str], checkpoints: list[str], curves: list[str],
           prune_report: str, manifest_path: str, predictions: list[str], sweep_metrics: list[str],
           out_csv: str, out_md: str, out_provenance: str, out_page: str, out_bn_gamma_png: str,
           out_gamma_quantiles_png: str, out_training_curves_png: str, out_latency_png: str, out_channels_png: str,
           out_pareto_png: str, out_training_dir: str, out_evaluation_dir: str, out_samples_dir: str,
           evaluator_report: str | None = None, int8_max_drop: float | None = None) -> None:
    """summary.csv / summary.md (one row per artifact), provenance.json, the plots and the HTML
    report's first page (reStructuredText, with prune.json's requested and achieved ratio), from
    the files `jobs.inputs("report", ...)` lists: `checkpoints` are the summary's rows (the first
    two the baseline and the sparse model, whose |γ| are plotted), `curves` each trained stage's
    CSV (named by its stem), `predictions` each stage's evaluate predictions; sweep points that
    are not there yet are left out (a report by hand before the sweep ran); `evaluator_report`, the
    family's evaluator's (diffusion's judge), is set beside the stages' scores. `int8_max_drop`, set
    with `export.int8: auto`, has summary.md say whether INT8 is kept (`export.int8_choice`)."""
    table = summary_table(metrics_paths, latency_paths)
    metric, prune = primary_metric(metrics_paths[0]), read_json(prune_report)
    record = write_provenance(checkpoints, out_provenance)
    note, sections = _evaluator_notes(evaluator_report, metrics_paths, manifest_path, predictions)
    write_summary(table, out_csv, out_md, sections={**sections, "Provenance": provenance_markdown(record)},
                  metric=metric, prune_report=prune, int8_max_drop=int8_max_drop)
    write_text(out_page, landing_page(table, metric, prune, note))
    plot_gamma({Path(path).stem: path for path in checkpoints[:2]}, out_bn_gamma_png, threshold=prune["threshold"])
    curve_files = {Path(path).stem: path for path in curves}
    curve_metric = validation_metric(curve_files, metric)
    pruned = table.loc[table["stage"] == "pruned", curve_metric] if curve_metric in table else []
    plot_training_curves(curve_files, curve_metric, out_training_curves_png,
                         pruned=float(pruned.iloc[0]) if len(pruned) else None)
    write_training_plots(curve_files, out_training_dir, out_gamma_quantiles_png, threshold=prune["threshold"])
    plot_latency(table, out_latency_png)
    write_plots(table, metric, prune, manifest_path=manifest_path,
                predictions={Path(path).name.split(".")[0]: path for path in predictions},
                sweep_metrics=[path for path in sweep_metrics if Path(path).exists()],
                out_channels_png=out_channels_png, out_pareto_png=out_pareto_png,
                out_evaluation_dir=out_evaluation_dir, out_samples_dir=out_samples_dir)
    log.info("summary:\n%s", table.to_string(index=False))


def _evaluator_notes(evaluator_report: str | None, metrics_paths: list[str], manifest_path: str,
                     predictions: list[str]) -> tuple[str, dict[str, str]]:
    """The evaluator's sentence for the first page and its section of summary.md ("" and {} without
    one), over the stages evaluated on the data it was trained on (a finetune on a dataset of its
    own is read by that data's evaluator: results/data/finetune/evaluator.json)."""
    if evaluator_report is None:
        return "", {}
    evaluator = read_json(evaluator_report)
    on_its_data = {m["stage"] for m in map(read_json, metrics_paths) if m.get("data", manifest_path) == manifest_path}
    stages = {Path(path).name.split(".")[0]: path for path in predictions}
    sentence, section = get_task(read_json(manifest_path)["task"]).evaluator_summary(
        evaluator, {stage: read_json(path) for stage, path in stages.items() if stage in on_its_data})
    return sentence, {"The evaluator's ceiling": section}


def sweep_report(*, baseline_metrics: str | os.PathLike, pruned_metrics: list[str | os.PathLike],
                 finetuned_metrics: list[str | os.PathLike], out_csv: str | os.PathLike,
                 out_png: str | os.PathLike) -> None:
    """results/sweep/summary.csv and the accuracy-against-FLOPs plot of a prune-ratio sweep."""
    table = write_sweep(baseline_metrics, pruned_metrics, finetuned_metrics, out_csv, out_png)
    log.info("sweep:\n%s", table.to_string(index=False))
