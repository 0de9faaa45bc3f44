"""Finetune one finished chain's pruned model again in several ways, through the real workflow.

The shared half of benchmarks/lora.py and benchmarks/distill.py: for each variant, RUN's
results up to the pruned model are copied to RUN-<suffix>/, a config laid over the run's sets
`stages.finetune` to the variant's section, and `snakemake` finetunes and evaluates only what that
changes. Each row holds the accuracy, how much of the run's own finetune recovery (from `pruned`
to `pruned_finetuned`) it reaches, and what the training cost.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
KEEP = ("data", "baseline.pt", "sparse.pt", "pruned.pt", "prune.json", "metrics", "train", "logs", "benchmarks")


def copy_chain(run: Path, dest: Path) -> None:
    """RUN's results up to the pruned model (Snakemake keeps them: same inputs, same params)."""
    (dest / "results").mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        src = run / "results" / name
        if src.is_dir():
            shutil.copytree(src, dest / "results" / name, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dest / "results" / name)
    for stale in ("metrics/pruned_finetuned.json", "train/pruned_finetuned.csv"):
        (dest / "results" / stale).unlink(missing_ok=True)


def row(results: Path, label: str, family_metric: str, pruned: float, full: float) -> dict:
    m = json.loads((results / "metrics/pruned_finetuned.json").read_text())
    t = m.get("training", {})
    value = m["metrics"][family_metric]
    return {"finetune": label, family_metric: round(value, 4),
            "recovered": round((value - pruned) / (full - pruned), 3) if full != pruned else None,
            "trainable params": t.get("trainable_params"),
            "trainable share": round(t["trainable_params"] / t["params"], 4) if t else None,
            "adapter KiB": round(t["adapter_bytes"] / 1024, 1) if t.get("adapter_bytes") else None,
            "s/epoch": t.get("seconds_per_epoch"), "peak MiB": t.get("peak_mem_mb")}


def compare_finetunes(run: Path, configfiles: list[str], reference: str, variants: list[tuple[str, str, dict]],
                      targets: tuple[str, ...] = ("results/metrics/pruned_finetuned.json",)) -> list[dict]:
    """Rows: the pruned model, RUN's own finetune (`reference`), then each (suffix, label,
    stages.finetune section) variant finetuned under RUN-<suffix>/ with `targets` built."""
    run = run.resolve()
    pruned_m = json.loads((run / "results/metrics/pruned.json").read_text())
    metric = next(iter(pruned_m["metrics"]))  # the family's headline metric comes first
    full_m = json.loads((run / "results/metrics/pruned_finetuned.json").read_text())
    pruned, full = pruned_m["metrics"][metric], full_m["metrics"][metric]
    rows = [{"finetune": "none (pruned)", metric: round(pruned, 4)}, row(run / "results", reference, metric, pruned, full)]
    for suffix, label, finetune in variants:
        dest = run.parent / f"{run.name}-{suffix}"
        copy_chain(run, dest)
        overlay = dest / "finetune.yaml"
        overlay.write_text(yaml.safe_dump({"stages": {"finetune": finetune}}))
        configs = [str(Path(c).resolve()) for c in configfiles] + [str(overlay)]
        # mtime, params and input only: the copied upstream artifacts are reused even when this
        # checkout is not the one that made them (Snakemake's code trigger would retrain them all).
        subprocess.run([sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"),
                        "--directory", str(dest), "--cores", "all", "--rerun-triggers", "mtime", "params", "input",
                        "--configfile", *configs], check=True)
        rows.append(row(dest / "results", label, metric, pruned, full))
    return rows


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A Markdown table of `columns` (– where a row has no value)."""
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join("–" if r.get(c) is None else str(r[c]) for c in columns) + " |")
