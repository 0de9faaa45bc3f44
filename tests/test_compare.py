"""`compare RUN...` without a pipeline run: the table prints numbers as summary.md does, and the plot
shows each run's checkpoints as points of their own (no line joins stages in chain order)."""
import pandas as pd
from matplotlib.collections import PathCollection

from pipeline_lib import compare as compare_module
from pipeline_lib.compare import compare
from test_report_plots import TABLE


def _run(folder, table):
    (folder / "results").mkdir(parents=True)
    table.to_csv(folder / "results/summary.csv", index=False)
    return folder


def test_compare_prints_summary_numbers_and_plots_points_only(tmp_path, monkeypatch):
    caught = []
    monkeypatch.setattr(compare_module, "save_figure", lambda fig, out: caught.append(fig))
    a = _run(tmp_path / "a", TABLE.assign(params=[1.77e6, 0.56e6, 1.77e6, 0.56e6]))
    b = _run(tmp_path / "b", TABLE.assign(mAP50_95=TABLE["mAP50_95"] + 0.1))
    text = compare([a, b], out_png=tmp_path / "c.png")
    assert "nan" not in text and "1.77 M" in text and "6.68 MiB" in text
    rows = [line for line in text.splitlines() if line.startswith("| a ") and "| pruned " in line]
    assert rows and "–" in rows[0], "no latency for the pruned checkpoint: a dash, as in summary.md"
    (fig,) = caught
    ax = fig.axes[0]
    assert not [line for line in ax.get_lines() if len(line.get_xdata()) > 1], "a line joins the stages"
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in points) == 2 * (TABLE["runtime"] == "torch").sum()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a", "b", "baseline", "pruned"], "a colour per run, a marker per stage"
    assert pd.read_csv(a / "results/summary.csv").shape == TABLE.shape
