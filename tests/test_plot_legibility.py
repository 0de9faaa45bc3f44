"""The report's plots read at the size the report shows them: every title inside the figure, every
legend entry an artist that is drawn (a Pareto front with one point is none), the latency labels
past their p90 whiskers and the Pareto labels apart. Figures are caught as they are saved."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from pipeline_lib import plotting, report, report_plots
from test_report_plots import PRUNE, TABLE


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report draws in the test, drawn (so its text has extents) before it is saved."""
    caught = []

    def catch(fig, out_png):
        fig.tight_layout()
        fig.canvas.draw()
        caught.append(fig)
        with open(out_png, "wb") as f:
            fig.savefig(f, format="png", dpi=110)

    monkeypatch.setattr(report, "_save", catch)
    monkeypatch.setattr(report_plots, "save_figure", catch)
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
