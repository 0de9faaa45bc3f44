"""The run's summary as text: summary.md (the short table, then every detail) and the HTML
report's first page, both from `report.summary_table`.

    write_summary(table, "results/summary.csv", "results/summary.md", metric="mAP50_95", prune_report=prune)
    write_text("results/report.rst", landing_page(table, "mAP50_95", prune))
"""
from __future__ import annotations

import os

import pandas as pd

from .compare import summary_cells
from .export.geometry import LATENCY_HEAD, SPEEDUP_HEAD, deployment_head
from .export.int8_choice import int8_verdict
from .io import atomic_path, write_text
from .report import accuracy_reference
from .report_plots import prune_request

__all__ = ["reference_line", "int8_vs_fp32", "geometry_heads", "per_geometry", "per_output_line", "short_table", "training_cost", "prune_lines",
           "write_summary", "CHAIN", "landing_page"]


def reference_line(table: pd.DataFrame, metric: str) -> str:
    """summary.md's sentence on which row the Δ column compares with, and why."""
    reference = accuracy_reference(table, metric)
    if reference is None:
        return ""
    row = table[table["stage"] == reference].iloc[0]
    epochs = "" if pd.isna(row.get("epochs")) else f" after {int(row['epochs'])} epochs"
    return (f"Accuracy reference: **{reference}** ({metric} {row[metric]:.3g}{epochs}), the best unpruned checkpoint "
            "of the chain; Δ is each row's accuracy minus it, and epochs counts every epoch that trained the weights.")


def int8_vs_fp32(table: pd.DataFrame, metric: str, max_drop: float | None = None) -> str | None:
    """Markdown table: each stage exported in both precisions, INT8 beside its own FP32 (`metric`, its
    change, latency, INT8's speedup over FP32, file size ratio); None when no stage has both. With
    `max_drop` (export.int8: auto) a line per stage says whether INT8 is kept, and why."""
    rows = table.set_index("stage")
    pairs, verdicts = [], []
    for label in rows.index[rows["runtime"] == "onnx_int8"]:
        stage = label.removesuffix(" [onnx_int8]")
        if f"{stage} [onnx_fp32]" not in rows.index:
            continue
        int8, fp32 = rows.loc[label], rows.loc[f"{stage} [onnx_fp32]"]
        pairs.append({"stage": stage, "calibration": int8.get("int8_calibration", "–"),
                      "float layers": int8.get("int8_float_layers", "–"), f"FP32 {metric}": fp32[metric],
                      f"INT8 {metric}": int8[metric], "change": int8[metric] - fp32[metric],
                      "FP32 ms": fp32["latency_ms"], "INT8 ms": int8["latency_ms"],
                      "INT8 speedup": fp32["latency_ms"] / int8["latency_ms"],
                      "size ratio": int8["file_bytes"] / fp32["file_bytes"]})
        if max_drop is not None:
            verdict = int8_verdict(fp32, int8, metric, max_drop, **_deployment_latency(fp32, int8))
            verdicts.append(f"- {stage} (export.int8: auto): {verdict['reason']}")
    if not pairs:
        return None
    shown = pd.DataFrame(pairs)
    for col in shown.columns[3:]:
        shown[col] = shown[col].map(lambda v: "–" if pd.isna(v) else f"{v:+.3g}" if col == "change" else f"{v:.3g}")
    return ("The same stage's models in ONNX Runtime; float layers: those kept float beyond the fixed rules "
            "(export.int8_float_layers).\n\n" + shown.to_markdown(index=False)
            + "".join(f"\n{line}" for line in ["", *verdicts] if verdicts))


def _deployment_latency(fp32: pd.Series, int8: pd.Series) -> dict:
    """int8_verdict's latency column: the deployment geometry's (the largest size, export.deploy)
    where both models were timed there, else the trained size's latency_ms."""
    head = deployment_head([c for c in fp32.index if pd.notna(fp32[c]) and pd.notna(int8.get(c))])
    return {"latency": head, "where": f" at {head.removeprefix(LATENCY_HEAD + ' ')}"} if head else {}


def geometry_heads(table: pd.DataFrame) -> list[str]:
    """The per-geometry columns of `summary_table` (latency and speedup), each geometry's pair together."""
    latency = [c for c in table.columns if c.startswith(f"{LATENCY_HEAD} ")]
    return [head for c in latency for head in (c, c.replace(LATENCY_HEAD, SPEEDUP_HEAD, 1))]


def per_geometry(table: pd.DataFrame) -> str | None:
    """Markdown table: each exported model's ONNX Runtime latency and speedup at every deployment
    geometry (export.deploy), the geometry in every column head; None when none was timed so."""
    heads = geometry_heads(table)
    if not heads:
        return None
    shown = table.dropna(subset=heads[:1])[["stage", *heads]].rename(columns={"stage": "artifact"})
    for col in heads:
        form = "{:.2f}x" if col.startswith(SPEEDUP_HEAD) else "{:.3g}"
        shown[col] = shown[col].map(lambda v: "–" if pd.isna(v) else form.format(v))
    return ("Median latency (ms) in ONNX Runtime on CPU at each deployment geometry (input size, intra-op threads, "
            "batch; export.deploy), timed in interleaved rounds per model; speedup against the FP32 baseline at the "
            "same geometry.\n\n" + shown.to_markdown(index=False))


_SHORT = {"stage": "artifact", "params": "params (M)", "flops": "GFLOPs", "latency_ms": "latency (ms)",
          "speedup_vs_baseline": "speedup"}


def per_output_line(table: pd.DataFrame) -> str:
    """The sentence that explains the per-output latency column ("" when every output is one call)."""
    if "latency_per_output_ms" not in table:
        return ""
    calls = sorted({int(n) for n in table["network_calls"]})
    return (f" One output takes {' or '.join(map(str, calls))} calls of the network (evaluate's sampler): "
            "per output is latency × calls.")


def short_table(table: pd.DataFrame, metric: str, size: bool = False) -> pd.DataFrame:
    """The short summary: artifact, `metric`, params, GFLOPs, latency, speedup (and size), as text;
    "–" where a number does not apply (no latency for that artifact), never nan."""
    delta = {f"{metric}_vs_reference": "Δ"} if f"{metric}_vs_reference" in table else {}
    columns = {"stage": "artifact", metric: metric, **delta, **({"epochs": "epochs"} if "epochs" in table else {}),
               **{k: v for k, v in _SHORT.items() if k != "stage"},
               **({"file_bytes": "size (MiB)"} if size else {})}
    if "latency_per_output_ms" in table:  # after the latency of one call
        at = list(columns).index("latency_ms") + 1
        columns = dict([*list(columns.items())[:at], ("latency_per_output_ms", "per output (ms)"),
                        *list(columns.items())[at:]])
    short = table[list(columns)].rename(columns=columns)
    for col, scale in (("params (M)", 1e6), ("GFLOPs", 1e9), ("size (MiB)", 2**20)):
        if col in short:
            short[col] = short[col] / scale
    for col in list(columns.values())[1:]:
        form = "{:+.3g}" if col == "Δ" else "{:.0f}" if col == "epochs" else "{:.3g}"
        short[col] = short[col].map(lambda v: "–" if pd.isna(v) else form.format(v))
    if "data" in table:  # rows measured on different datasets (stages.finetune.dataset): say which
        short.insert(2, "data", table["data"].map(lambda v: "–" if pd.isna(v) else str(v)))
    return short


_COST = {"stage": "artifact", "trainable_params": "trainable params",
         "adapter_bytes": "LoRA adapter (KiB, share of checkpoint)", "train_s_per_epoch": "s/epoch",
         "train_peak_mem_mb": "peak memory (MiB)"}


def training_cost(table: pd.DataFrame) -> str | None:
    """Markdown table of what each trained artifact's training cost (None when no row has it)."""
    if "trainable_params" not in table:
        return None
    cost = table.dropna(subset=["trainable_params"]).reindex(columns=list(_COST)).rename(columns=_COST)
    cost["trainable params"] = [f"{int(n):,} ({n / p:.1%})" for n, p in
                                zip(cost["trainable params"], table.loc[cost.index, "params"])]
    adapter = _COST["adapter_bytes"]  # the checkpoint is the merged one the row's file_bytes measures
    cost[adapter] = [("–" if pd.isna(a) else f"{a / 1024:.1f} ({a / f:.1%})") for a, f in
                     zip(cost[adapter], table.loc[cost.index, "file_bytes"])]
    return cost.to_markdown(index=False)


def prune_lines(prune_report: dict, code: str = "``") -> list[str]:
    """Bullet lines (valid Markdown and reStructuredText) on prune.json: requested against achieved
    ratio, the threshold, the cost before and after, the clamped layers with why and the dropped blocks."""
    clamped = prune_report.get("clamped")
    if clamped is None:  # a prune.json from before the planner recorded them: the layers at the floor
        floor = prune_report["config"]["min_channels"]
        held = [name for name, n in prune_report["layers"].items() if n["after"] <= floor < n["before"]]
        clamped_line = f"- layers held at min_channels ({floor}): {len(held)} of {len(prune_report['layers'])}"
    else:
        shown = ", ".join(f"{code}{c['layer']}{code} ({c['channels']}→{c['kept']}, {' and '.join(c['reason'])})"
                          for c in clamped[:12])
        more = f", and {len(clamped) - 12} more (prune.json)" if len(clamped) > 12 else ""
        clamped_line = (f"- clamped layers (kept more channels than the threshold asks): {len(clamped)}"
                        + (f": {shown}{more}" if clamped else ""))
    dropped = prune_report.get("dropped_blocks") or []
    dropped_line = [f"- residual blocks dropped (prune.drop_blocks): {len(dropped)}: "
                    + ", ".join(f"{code}{b}{code}" for b in dropped)] if dropped else []
    return [prune_request(prune_report),
            f"- achieved ratio: **{prune_report['ratio_achieved']:.3g}** "
            f"(threshold on the BN scales: {prune_report['threshold']:.3g})",
            clamped_line, *dropped_line,
            f"- FLOPs {prune_report['before']['flops'] / 1e9:.3g} G → {prune_report['after']['flops'] / 1e9:.3g} G, "
            f"params {prune_report['before']['params'] / 1e6:.3g} M → {prune_report['after']['params'] / 1e6:.3g} M"]


def write_summary(table: pd.DataFrame, out_csv: str | os.PathLike, out_md: str | os.PathLike,
                  sections: dict[str, str] | None = None, metric: str | None = None,
                  prune_report: dict | None = None, int8_max_drop: float | None = None) -> None:
    """summary.csv and summary.md: the short table (`metric` as the accuracy), then details: the
    pruning, every metric of every artifact, and `sections` ({title: markdown}); `int8_max_drop`:
    see int8_vs_fp32."""
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    # "1.77 M", "–" where a number does not apply; the per-geometry columns have their own section
    shown = summary_cells(table.drop(columns=["runtime", *geometry_heads(table)]))
    head = "# slimflow summary\n\n"
    if metric is not None:
        head += (f"{metric} is the headline accuracy; latency: median at batch 1 on CPU (ms) at the trained input "
                 f"size and export.threads (other geometries: below); speedup against the baseline in the same runtime.{per_output_line(table)} {reference_line(table, metric)}\n\n"
                 + short_table(table, metric).to_markdown(index=False) + "\n\n# Details\n")
    int8 = int8_vs_fp32(table, metric, int8_max_drop) if metric is not None else None
    details = {"INT8 against FP32": int8} if int8 else {}
    geometry = per_geometry(table)
    details |= {"Latency per deployment geometry": geometry} if geometry else {}
    details |= ({"Pruning": "\n".join(prune_lines(prune_report, "`"))} if prune_report else {})
    cost = training_cost(table)
    details |= {"Training cost": cost} if cost else {}
    shown = shown.drop(columns=[c for c in _COST if c != "stage" and c in shown])
    details |= {"All metrics": shown.to_markdown(index=False), **(sections or {})}
    write_text(out_md, head + "".join(f"\n## {title}\n\n{body}\n" for title, body in details.items()))


# The chain as a short list: Snakemake's report shows the first page in a column 32rem wide beside
# its rule graph, so a wide literal block would scroll and a wide table would run under the graph.
CHAIN = ["prepare the dataset",
         "train: baseline → sparse (L1 on BN γ) → prune → finetune",
         "evaluate every stage",
         "export ONNX → quantize INT8 → evaluate in ONNX Runtime",
         "report"]

# The first page's table leaves out what the pruning lines or summary.md say (params, GFLOPs, epochs,
# one call's latency where an output takes several): it must fit that 32rem column.
_PAGE_DROPS = ("params (M)", "GFLOPs", "epochs")


def _page_table(table: pd.DataFrame, metric: str) -> str:
    """The first page's summary table as a reStructuredText grid table (short_table's, narrower)."""
    short = short_table(table, metric, size=True)
    drops = [*_PAGE_DROPS, *(["latency (ms)"] if "per output (ms)" in short else [])]
    return short.drop(columns=[c for c in drops if c in short]).to_markdown(index=False, tablefmt="grid")


def landing_page(table: pd.DataFrame, metric: str, prune_report: dict | None = None, note: str = "") -> str:
    """The HTML report's first page (reStructuredText): the chain, one short summary table and the
    pruning: requested against achieved ratio and the clamped layers.

    `table` is `summary_table`'s; `metric` the headline accuracy column; `prune_report` prune.json;
    `note` a sentence under the table (what bounds the metric: diffusion's judge).
    """
    page = ["slimflow run", "============", "", "The chain (each step reads the files the one before wrote):", "",
            *[f"#. {step}" for step in CHAIN], "", "Summary", "-------", "",
            f"Headline accuracy {metric}; latency is the median at batch 1 on CPU at the trained input size "
            "(PyTorch eager for checkpoints, ONNX Runtime for exported models; every deployment geometry: "
            "results/summary.md); speedup against the baseline in the same runtime."
            f"{per_output_line(table)} "
            f"{reference_line(table, metric).replace('**', '*')} FLOPs and params: the pruning below; epochs: "
            "results/summary.md.",
            "", _page_table(table, metric), "", *([note, ""] if note else [])]
    if prune_report is not None:
        page += ["Pruning", "-------", "", *prune_lines(prune_report), ""]
    page += ["The plots are under the categories on the left (slimming, training, deployment, evaluation, sample "
             "predictions); every metric of every artifact and the provenance of each checkpoint are in "
             "results/summary.md.", ""]
    return "\n".join(page)
