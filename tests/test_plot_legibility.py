"""The report's plots read at the size the report shows them: every title inside the figure, every
legend entry an artist that is drawn (a Pareto front with one point is none), the latency labels
past their p90 whiskers and the Pareto labels apart; the per-stage training curves, the γ quantiles,
and detection's P/R/F1 curves and confusion matrix likewise. Figures are caught as they are saved."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from pipeline_lib import plotting, report, report_plots, report_training
from pipeline_lib.tasks.detection import report as detection_report
from test_report_plots import DETS, GT, PRUNE, TABLE


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report draws in the test, drawn (so its text has extents) before it is saved."""
    caught = []

    def catch(fig, out_png):
        fig.tight_layout()
        fig.canvas.draw()
        caught.append(fig)
        Path(out_png).parent.mkdir(parents=True, exist_ok=True)
        with open(out_png, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        return Path(out_png)

    monkeypatch.setattr(report, "_save", catch)
    for module in (report_plots, report_training, detection_report):
        monkeypatch.setattr(module, "save_figure", catch)
    return caught


def assert_titles_fit(fig):
    inside = fig.bbox
    texts = [t for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]
    for text in texts + ([fig._suptitle] if fig._suptitle else []):
        box = text.get_window_extent()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and box.y1 <= inside.y1, \
            f"title {text.get_text()!r} at {box.bounds} leaves the figure {inside.bounds}"


def drawn(artist) -> bool:
    """Whether an artist shows anything: a line of two points or more, a point, a bar of some size."""
    if isinstance(artist, Line2D):
        return np.isfinite(np.asarray(artist.get_xydata(), float)).all(axis=1).sum() >= 2
    if isinstance(artist, PathCollection):
        return len(artist.get_offsets()) > 0
    if isinstance(artist, Rectangle):
        return artist.get_width() > 0 and artist.get_height() > 0
    return any(drawn(a) for a in getattr(artist, "patches", None) or getattr(artist, "lines", None) or [])


def assert_legends_match_drawn(fig):
    for ax in fig.axes:
        handles, labels = ax.get_legend_handles_labels()
        shown = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
        assert shown == labels, f"{ax.get_title()}: legend {shown}, labelled artists {labels}"
        for handle, label in zip(handles, labels):
            assert drawn(handle), f"{ax.get_title()}: legend lists {label!r}, which is not drawn"


def test_channels_title_fits_a_long_target_request(figures, tmp_path):
    search = {"target": {"speedup": 2.5}, "unpruned": {"flops": 2e9}, "threshold": 0.02, "reused": "results/sweep/x",
              "probes": [{"threshold": 0.02, "latency_ms": 1.23, "speedup": 2.46}]}
    for prune in (PRUNE, {**PRUNE, "search": search}):
        report_plots.plot_channels(prune, tmp_path / "channels.png")
    for fig in figures:
        assert_titles_fit(fig)
        assert_legends_match_drawn(fig)
    assert "\n" in figures[1].axes[0].get_title(), "the long title is wrapped"


def test_latency_labels_sit_past_the_p90_whiskers(figures, tmp_path):
    report.plot_latency(TABLE.assign(flops_vs_baseline=1.0), tmp_path / "latency.png")
    (fig,) = figures
    ax = fig.axes[0]
    assert_titles_fit(fig)
    timed = TABLE.dropna(subset=["latency_ms"]).reset_index(drop=True)
    frame = ax.get_window_extent()
    for i, note in enumerate(ax.texts):
        whisker_end = ax.transData.transform((timed.loc[i, "latency_p90_ms"], i))[0]
        box = note.get_window_extent()
        assert box.x0 > whisker_end, f"{note.get_text()!r} starts at {box.x0:.0f} px, its whisker ends at {whisker_end:.0f}"
        assert box.x1 <= frame.x1, f"{note.get_text()!r} runs out of the axes"


@pytest.mark.parametrize("rows", [slice(None), slice(0, 1)], ids=["every row", "one checkpoint only"])
def test_pareto_legend_lists_only_what_each_panel_draws(figures, tmp_path, rows):
    table = TABLE.iloc[rows]
    report_plots.plot_pareto(table, "mAP50_95", tmp_path / "pareto.png")
    (fig,) = figures
    assert_titles_fit(fig)
    assert_legends_match_drawn(fig)
    labels = [ax.get_legend_handles_labels()[1] for ax in fig.axes]
    assert labels == ([["exported models", "Pareto front"], ["checkpoints", "Pareto front"]] if len(table) > 1
                      else [[], ["checkpoints"]])


def test_pareto_labels_of_points_close_together_do_not_overlap(figures, tmp_path):
    close = pd.concat([TABLE, TABLE.iloc[[3]].assign(stage="pruned_finetuned [onnx_fp32]", runtime="onnx_fp32",
                                                     latency_ms=0.41)], ignore_index=True)
    report_plots.plot_pareto(close, "mAP50_95", tmp_path / "pareto.png")
    boxes = [t.get_window_extent() for t in figures[0].axes[0].texts]
    for i, a in enumerate(boxes):
        for b in boxes[:i]:
            assert not a.overlaps(b), "two point labels print over each other"


def test_wrapped_keeps_short_titles_on_one_line():
    fig = plotting.plt.figure(figsize=(8, 4))
    assert plotting.wrapped(fig, "latency") == "latency"
    assert plotting.wrapped(fig, "word " * 60).count("\n") >= 2
    plotting.plt.close(fig)


def _training_csv(path, epochs=6, sparse=False):
    """A stage's CSV as the engine writes it: loss terms every epoch, metrics every other epoch and
    the last, the γ columns for the sparsity stage (|γ| falling over three decades)."""
    rows = []
    for e in range(1, epochs + 1):
        validated = e % 2 == 0 or e == epochs
        row = {"epoch": e, "train/box": 0.1 / e, "train/obj": 0.02 / e, "train/cls": 0.05 / e,
               "metrics/mAP50_95": 0.1 * e if validated else np.nan, "metrics/mAP50": 0.15 * e if validated else np.nan,
               "fitness": 0.1 * e, "lr/pg0": 0.01, "time_s": 1.0}
        if sparse:
            row.update({"gamma/q10": 10.0 ** -e, "gamma/q50": 10.0 ** (-e / 2), "gamma/q90": 0.9,
                        "gamma/frac_lt_1e-2": min(1, e / 8), "gamma/frac_lt_1e-3": min(1, e / 12)})
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_stage_curves_draw_every_loss_term_and_metric_and_read(figures, tmp_path):
    csvs = {"baseline": _training_csv(tmp_path / "baseline.csv"),
            "sparse": _training_csv(tmp_path / "sparse.csv", sparse=True)}
    paths = report_training.write_training_plots(csvs, tmp_path / "training", tmp_path / "gamma.png", threshold=3e-3)
    assert [p.name for p in paths] == ["baseline.png", "sparse.png", "gamma.png"]
    for fig in figures:
        assert_titles_fit(fig)
        assert_legends_match_drawn(fig)
    for fig in figures[:2]:
        panels = [ax.get_title() for ax in fig.axes if ax.lines]
        assert panels == ["training loss: box", "training loss: obj", "training loss: cls", "validation: mAP50_95",
                          "validation: mAP50"], "one panel per train/ and metrics/ column, nothing else"
        val = fig.axes[3].lines[0].get_xdata()
        assert list(val) == [2, 4, 6], "a metric is drawn through the epochs that validated"
    quantiles, fractions = figures[2].axes
    assert quantiles.get_yscale() == "log", "three decades of |γ| on a log axis"
    assert [line.get_label() for line in quantiles.lines] == ["sparse: q90", "sparse: q50", "sparse: q10",
                                                             "prune threshold 0.003"]
    assert len(fractions.lines) == 2


def test_gamma_quantiles_say_so_when_no_stage_logged_them(figures, tmp_path):
    report_training.plot_gamma_quantiles({"baseline": _training_csv(tmp_path / "b.csv")}, tmp_path / "g.png", 0.01)
    (fig,) = figures
    assert_legends_match_drawn(fig)
    assert "no stage logged" in fig.axes[0].texts[0].get_text()


def test_confidence_curves_and_confusion_matrix_read(figures, tmp_path):
    names = ["a", "b", "c"]
    detection_report.plot_confidence_curves(GT, DETS, names, "pruned_finetuned", tmp_path / "curves.png")
    detection_report.plot_confusion_matrix(GT, DETS, names, "pruned_finetuned", tmp_path / "cm.png")
    curves, matrix = figures
    for fig in figures:
        assert_titles_fit(fig)
        assert_legends_match_drawn(fig)
    f1 = curves.axes[2]
    assert f1.get_legend_handles_labels()[1] == ["a", "b", "all classes: best F1 0.90 at 0.00"]
    ax = matrix.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names + ["background"]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "2"], "each non-zero count printed in its cell"


def test_geometry_labels_omit_a_speedup_the_baseline_was_not_timed_for(figures, tmp_path):
    """A chain continued from an older run: its baseline ONNX was timed at 128 px only, so the slim
    models' 640-px bars have a latency but no speedup; their labels say the latency alone, never "nan".
    Two models make a short panel: its legend still sits below the x label."""
    heads = {"ORT ms 128 px 1 thr b1": [1.0, np.nan, np.nan, 0.4], "speedup 128 px 1 thr b1": [1.0, np.nan, np.nan, 2.5],
             "ORT ms 640 px 1 thr b1": [np.nan, np.nan, np.nan, 12.7],
             "speedup 640 px 1 thr b1": [np.nan, np.nan, np.nan, np.nan]}
    report.plot_latency(TABLE.assign(flops_vs_baseline=1.0, **heads), tmp_path / "latency.png")
    (fig,) = figures
    notes = [t.get_text() for t in fig.axes[1].texts]
    assert notes and not any("nan" in n for n in notes), notes
    assert "12.7 ms" in notes and "0.4 ms, 2.50x" in notes
    assert_titles_fit(fig)
    legend, xlabel = fig.axes[1].get_legend().get_window_extent(), fig.axes[1].xaxis.label.get_window_extent()
    assert legend.y1 <= xlabel.y0, f"the legend {legend.bounds} covers the x label {xlabel.bounds} of a short panel"
    assert legend.y0 >= fig.bbox.y0, "the legend leaves the figure"


def test_pareto_latency_is_where_the_models_deploy_and_says_so(figures, tmp_path):
    # the export timed two geometries: the Pareto panel plots the deployment one (largest size,
    # fewest threads, batch 1), not the trained-size latency_ms, and its axis names it
    onnx = TABLE["runtime"] != "torch"
    table = TABLE.assign(**{"ORT ms 128 px 1 thr b1": TABLE["latency_ms"].where(onnx),
                            "ORT ms 640 px 1 thr b1": (25 * TABLE["latency_ms"]).where(onnx),
                            "ORT ms 640 px 2 thr b1": (15 * TABLE["latency_ms"]).where(onnx)})
    report_plots.plot_pareto(table, "mAP50_95", tmp_path / "pareto.png")
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == "ONNX Runtime latency at 640 px 1 thr b1, ms (median)"
    drawn = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections if isinstance(c, PathCollection)])
    assert sorted(drawn) == sorted(25 * TABLE.loc[onnx, "latency_ms"])
