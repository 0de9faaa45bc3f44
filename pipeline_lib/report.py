"""The run report's table: one row per artifact with cost, accuracy and ratios against the baseline,
and the plots drawn from it (the text pages are `pipeline_lib.summary`).

    table = summary_table(["results/metrics/baseline.json", ...], ["results/latency/baseline.torch.json", ...])
    plot_gamma({"baseline": "results/baseline.pt", "sparse": "results/sparse.pt"}, "results/plots/bn_gamma.png")
    plot_training_curves({"baseline": "results/train/baseline.csv", ...}, "mAP50_95", "results/plots/training_curves.png")
    write_sweep(["results/metrics/baseline.json"], ["results/sweep/r0.5/metrics/pruned_finetuned.json", ...], ...)
"""
from __future__ import annotations

import math
import os

import pandas as pd
import torch
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.transforms import offset_copy

from .chain import sweep_label, sweep_point
from .checkpoint import load_checkpoint
from .export.geometry import LATENCY_HEAD, SPEEDUP_HEAD, geometry_columns
from .io import atomic_path, read_json
from .plotting import plt, save_figure as _save, wrapped
from .tasks import get_task


__all__ = ["summary_table", "accuracy_reference", "plot_latency", "bn_gammas", "plot_gamma", "plot_training_curves",
           "validation_metric", "sweep_table", "write_sweep", "primary_metric"]


def primary_metric(metrics_path: str | os.PathLike) -> str:
    """The headline accuracy of a metrics file's family: the first of its `metric_keys`."""
    return get_task(read_json(metrics_path)["task"]).metric_keys[0]


def _reference(row: pd.Series) -> str:
    """The baseline row a row is compared with: the same runtime (FP32 ONNX for any ONNX row)."""
    return "baseline" if row["runtime"] == "torch" else "baseline [onnx_fp32]"


def summary_table(metrics_paths: list[str | os.PathLike], latency_paths: list[str | os.PathLike] = ()) -> pd.DataFrame:
    """One row per artifact: checkpoints (runtime torch) and exported models (onnx_fp32, onnx_int8).

    Latency is the median at batch 1 (PyTorch eager for checkpoints, from `latency_paths`; ONNX
    Runtime for exported models); every *_vs_baseline ratio is against the baseline in the same runtime.
    """
    torch_latency = {m["stage"]: m["latency_ms"] for m in map(read_json, latency_paths)}
    rows, epochs = [], {}
    for path in metrics_paths:
        m = read_json(path)
        epochs.setdefault(m["stage"], m.get("epochs_total"))
        runtime = m.get("format", "torch")
        latency = m.get("latency_ms") or torch_latency.get(m["stage"], {})
        rows.append({"stage": m["stage"] if runtime == "torch" else f"{m['stage']} [{runtime}]", "runtime": runtime,
                     **m["metrics"], "fitness": m["fitness"], "params": m["params"], "flops": m["flops"],
                     "latency_ms": latency.get("median"), "latency_p90_ms": latency.get("p90"),
                     "network_calls": m.get("network_calls", 1), "file_bytes": m["file_bytes"], "data": m.get("data"),
                     **_training_columns(m), **_int8_columns(m), **geometry_columns(m.get("latency", []))})
    table = pd.DataFrame(rows).set_index("stage")
    # an exported model was trained as its checkpoint was: "pruned_finetuned [onnx_int8]" -> "pruned_finetuned"
    table["epochs"] = [epochs.get(stage.split(" [")[0]) for stage in table.index]
    if table["data"].nunique() < 2:  # one dataset: nothing to tell apart
        table = table.drop(columns="data")
    reference = table.reindex(table.apply(_reference, axis=1)).set_axis(table.index)  # NaN where it is absent
    for col in ("params", "flops", "file_bytes"):
        table[f"{col}_vs_baseline"] = table[col] / reference[col]
    table["speedup_vs_baseline"] = reference["latency_ms"].astype(float) / table["latency_ms"].astype(float)
    for col in [c for c in table.columns if c.startswith(f"{LATENCY_HEAD} ")]:  # per deployment geometry
        table[col.replace(LATENCY_HEAD, SPEEDUP_HEAD, 1)] = reference[col].astype(float) / table[col].astype(float)
    if (table["network_calls"] > 1).any():  # an output costs several calls (a sampler's steps)
        table["latency_per_output_ms"] = table["latency_ms"].astype(float) * table["network_calls"]
    else:
        table = table.drop(columns="network_calls")
    table = table.reset_index()
    metric = primary_metric(metrics_paths[0]) if metrics_paths else None
    if metric is not None and (reference := accuracy_reference(table, metric)) is not None:
        table[f"{metric}_vs_reference"] = table[metric] - float(table.loc[table["stage"] == reference, metric].iloc[0])
    return table


UNPRUNED = ("baseline", "sparse")


def accuracy_reference(table: pd.DataFrame, metric: str) -> str | None:
    """The row a slim model's accuracy is held against: the best unpruned checkpoint of the chain
    (baseline or sparse: the sparse model is the same network trained longer, so a finetuned slim
    model that only beats the baseline may owe it to its extra epochs)."""
    unpruned = table[table["stage"].isin(UNPRUNED)]
    return str(unpruned.loc[unpruned[metric].idxmax(), "stage"]) if unpruned[metric].notna().any() else None


def _training_columns(metrics: dict) -> dict:
    """What training a checkpoint cost (absent for exported models and untrained ones)."""
    t = metrics.get("training")
    if not t:
        return {}
    return {"trainable_params": t["trainable_params"], "adapter_bytes": t.get("adapter_bytes"),
            "train_s_per_epoch": t["seconds_per_epoch"], "train_peak_mem_mb": t["peak_mem_mb"]}


def _int8_columns(metrics: dict) -> dict:
    """How an INT8 model was quantized (absent for every other row)."""
    if "int8_calibration" not in metrics:
        return {}
    return {"int8_calibration": metrics["int8_calibration"], "int8_float_layers": len(metrics["int8_float_layers"])}


def _plot_geometries(ax, table: pd.DataFrame) -> None:
    """Each exported model's ONNX Runtime latency at every deployment geometry: a group of bars per
    geometry (log scale: 32 px and 640 px differ a hundredfold), each bar with its speedup."""
    heads = [c for c in table.columns if c.startswith(f"{LATENCY_HEAD} ")]
    models = table.dropna(subset=heads[:1])
    height = 0.8 / len(models)
    for k, (_, row) in enumerate(models.iterrows()):
        y = [g + k * height for g in range(len(heads))]
        ax.barh(y, row[heads].astype(float), height=height, color=f"C{k % 10}", label=row["stage"])
        for yi, head in zip(y, heads):
            if pd.isna(row[head]):
                continue  # not timed at this geometry
            speedup = row[head.replace(LATENCY_HEAD, SPEEDUP_HEAD, 1)]  # none where the baseline was not timed there
            ax.annotate(f"{row[head]:.3g} ms" + ("" if pd.isna(speedup) else f", {speedup:.2f}x"), (row[head], yi),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_yticks([g + 0.4 - height / 2 for g in range(len(heads))], [h.removeprefix(f"{LATENCY_HEAD} ") for h in heads])
    ax.invert_yaxis()
    low, high = models[heads].min().min(), models[heads].max().max()
    if high / low > 20:  # sizes a decade apart: log scale, labelled in plain numbers
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(low / 1.5, high * 8)
    else:
        ax.set_xlim(0, high * 1.5)
    ax.set(xlabel=f"ONNX Runtime latency, ms (median{'; log scale' if high / low > 20 else ''})",
           title=wrapped(ax.figure, "per deployment geometry (input size, threads, batch): ms, and speedup against "
                                    "the FP32 baseline at the same geometry", share=0.7))
    # below the x label at a fixed distance in points: a fraction of a short panel's height would overlap it
    below = offset_copy(ax.transAxes, fig=ax.figure, y=-36, units="points")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=min(len(models), 3))


def plot_latency(table: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Median latency per artifact (p90 as the whisker), with its speedup and FLOPs ratio; below it,
    the exported models at every deployment geometry (when the metrics have them)."""
    timed = table.dropna(subset=["latency_ms"])
    geometry = [c for c in table.columns if c.startswith(f"{LATENCY_HEAD} ")]
    if geometry:
        exported = table[geometry[0]].notna().sum()
        fig, (ax, ax_geo) = plt.subplots(2, 1, figsize=(9, 0.6 * len(timed) + 0.3 * exported * len(geometry) + 3.5),
                                         height_ratios=[0.6 * len(timed) + 1, 0.3 * exported * len(geometry) + 1])
        _plot_geometries(ax_geo, table)
    else:
        fig, ax = plt.subplots(figsize=(8, 0.6 * len(timed) + 1.5))
    y = range(len(timed))
    ax.barh(y, timed["latency_ms"], xerr=[[0] * len(timed), timed["latency_p90_ms"] - timed["latency_ms"]],
            color=["tab:gray" if r == "torch" else "tab:blue" for r in timed["runtime"]])
    for i, (_, row) in enumerate(timed.iterrows()):  # past the whisker's end, never through it
        end = row["latency_ms"] if pd.isna(row["latency_p90_ms"]) else max(row["latency_p90_ms"], row["latency_ms"])
        ax.annotate(f"{row['speedup_vs_baseline']:.2f}x faster, FLOPs x{row['flops_vs_baseline']:.2f}", (end, i),
                    xytext=(5, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(list(y), timed["stage"])
    ax.invert_yaxis()
    ax.set(xlabel="latency at batch 1 and the trained input size, ms (median; whisker: p90)", title="latency (grey: PyTorch eager, blue: ONNX Runtime)")
    ax.set_xlim(0, timed["latency_p90_ms"].max() * 1.6)
    _save(fig, out_png)


def bn_gammas(checkpoint: str | os.PathLike) -> torch.Tensor:
    """|γ| of every BatchNorm channel in a checkpoint (a BN is a prefix with a running_var)."""
    state = load_checkpoint(checkpoint)["state_dict"]
    prefixes = [k[: -len("running_var")] for k in state if k.endswith("running_var")]
    return torch.cat([state[p + "weight"].abs().flatten() for p in prefixes if p + "weight" in state])


def plot_gamma(checkpoints: dict[str, str | os.PathLike], out_png: str | os.PathLike,
               threshold: float | None = None) -> None:
    """Histograms of |γ| per stage on a log axis: sparsity training should pile scales near zero.
    `threshold` (prune.json's) is marked: channels whose coupled group's largest |γ| is below it go."""
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = torch.linspace(-6, 1, 71).numpy()  # shared edges so the stages compare bin by bin
    for name, path in checkpoints.items():
        gamma = bn_gammas(path).clamp(1e-6, 10).log10().numpy()
        ax.hist(gamma, bins=bins, alpha=0.55, label=f"{name} ({(gamma < -2).mean():.0%} below 1e-2)")
    if threshold is not None:
        ax.axvline(math.log10(min(max(threshold, 1e-6), 10)), color="tab:red", ls="--",
                   label=f"prune threshold |γ| = {threshold:.3g}")
    ax.set(xlabel="log10 |γ| of BatchNorm scales", ylabel="channels", title="BN scale factors")
    ax.legend()
    _save(fig, out_png)


def validation_metric(csvs: dict[str, str | os.PathLike], metric: str) -> str:
    """The metric the training curves show: the headline when training validated it, else the first
    one training logged (diffusion picks epochs by its val denoising loss; its judge scores stages)."""
    header = pd.read_csv(next(iter(csvs.values())), nrows=0).columns
    logged = [c.removeprefix("metrics/") for c in header if c.startswith("metrics/")]
    return metric if metric in logged or not logged else logged[0]


def plot_training_curves(csvs: dict[str, str | os.PathLike], metric: str, out_png: str | os.PathLike,
                         pruned: float | None = None) -> None:
    """Training loss and validation `metric` of consecutive stages on one epoch axis; `pruned`, the
    pruned model's metric, is marked between the last two stages (the last, finetune, starts from it)."""
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for n, (name, path) in enumerate(csvs.items()):
        history = pd.read_csv(path)
        if pruned is not None and n == len(csvs) - 1:
            ax_metric.scatter([offset + 0.5], [pruned], marker="*", s=140, color="tab:red", zorder=3,
                              label=f"pruned, before finetuning ({pruned:.3g})")
        epochs = history["epoch"] + offset
        loss = history.filter(like="train/").sum(axis=1)
        ax_loss.plot(epochs, loss, label=name)
        if "train/distill" in history:  # a distilled finetune: its teacher's term on its own
            ax_loss.plot(epochs, history["train/distill"], ls="--", label=f"{name}: distill term")
        val = history[["epoch", f"metrics/{metric}"]].dropna()
        ax_metric.plot(val["epoch"] + offset, val[f"metrics/{metric}"], marker="o", label=name)
        offset += int(history["epoch"].max())
        for ax in (ax_loss, ax_metric):
            ax.axvline(offset + 0.5, color="grey", lw=0.5)
    ax_loss.set(xlabel="epoch (stages in order)", ylabel="training loss (sum of terms)", title="training loss")
    ax_metric.set(xlabel="epoch (stages in order)", ylabel=metric, title=f"validation {metric}")
    ax_loss.legend()
    ax_metric.legend(fontsize=8)
    _save(fig, out_png)


def sweep_table(base: dict, metric: str, pruned: list[str | os.PathLike],
                finetuned: list[str | os.PathLike]) -> pd.DataFrame:
    """One row per sweep point (ratio or target): cost and accuracy before and after finetuning, against the baseline's metrics."""
    rows = []
    for before_path, after_path in zip(pruned, finetuned):
        before, after = read_json(before_path), read_json(after_path)
        kind, value = sweep_point(after["stage"])
        rows.append({"point": sweep_label(after["stage"]), "ratio": value if kind == "ratio" else None,
                     "params": after["params"], "flops": after["flops"],
                     "flops_vs_baseline": after["flops"] / base["flops"],
                     f"pruned_{metric}": before["metrics"][metric], metric: after["metrics"][metric],
                     f"{metric}_minus_baseline": after["metrics"][metric] - base["metrics"][metric]})
    return pd.DataFrame(rows).sort_values("flops", ascending=False).reset_index(drop=True)  # deeper cuts below


def write_sweep(baseline: str | os.PathLike, pruned: list[str | os.PathLike], finetuned: list[str | os.PathLike],
                out_csv: str | os.PathLike, out_png: str | os.PathLike) -> pd.DataFrame:
    """results/sweep/summary.csv and the accuracy-against-FLOPs plot (the baseline as a reference point)."""
    metric, base = primary_metric(baseline), read_json(baseline)
    table = sweep_table(base, metric, pruned, finetuned)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    gflops = table["flops"] / 1e9
    ax.plot(gflops, table[metric], marker="o", label="pruned + finetuned")
    ax.plot(gflops, table[f"pruned_{metric}"], marker="x", ls="--", label="pruned, before finetuning")
    for x, y, label in zip(gflops, table[metric], table["point"]):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.scatter([base["flops"] / 1e9], [base["metrics"][metric]], marker="*", s=120, color="k", label="baseline")
    ax.set(xlabel="GFLOPs per image", ylabel=metric, title="prune sweep")
    ax.legend()
    _save(fig, out_png)
    return table
