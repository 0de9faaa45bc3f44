"""Full finetuning against LoRA finetuning of the same pruned model, through the real workflow.

    python benchmarks/lora.py runs/default --configfile config/config.yaml --ranks 0 4 8

RUN is a finished chain (its results/ holds pruned.pt and the fully finetuned
pruned_finetuned.pt with their metrics). For each rank, RUN's results up to the pruned model are
copied to RUN-lora-r<R>/, a config laid over the run's sets `stages.finetune.lora` (r, alpha = r,
default targets, frozen norms unless --train-bn), and `snakemake` finetunes, evaluates and exports
only what that changes. The table compares each finetune's trainable parameters, adapter file,
seconds per epoch, peak memory and accuracy, and how much of full finetuning's recovery (from
`pruned` to `pruned_finetuned`) LoRA reaches. Latency of the exports: benchmarks/latency.py.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
KEEP = ("data", "baseline.pt", "sparse.pt", "pruned.pt", "prune.json", "metrics", "train", "logs", "benchmarks")


def _copy_chain(run: Path, dest: Path) -> None:
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


def _row(results: Path, label: str, family_metric: str, pruned: float, full: float) -> dict:
    m = json.loads((results / "metrics/pruned_finetuned.json").read_text())
    t = m.get("training", {})
    value = m["metrics"][family_metric]
    return {"finetune": label, family_metric: round(value, 4),
            "recovered": round((value - pruned) / (full - pruned), 3) if full != pruned else None,
            "trainable params": t.get("trainable_params"),
            "trainable share": round(t["trainable_params"] / t["params"], 4) if t else None,
            "adapter KiB": round(t["adapter_bytes"] / 1024, 1) if t.get("adapter_bytes") else None,
            "s/epoch": t.get("seconds_per_epoch"), "peak MiB": t.get("peak_mem_mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished chain's folder (holds results/)")
    parser.add_argument("--configfile", nargs="+", required=True, help="the config files the run used")
    parser.add_argument("--ranks", nargs="+", type=int, default=[4, 8], help="0: a full finetune, timed alike")
    parser.add_argument("--train-bn", action="store_true", help="also train BatchNorm (lora.train_bn: true)")
    args = parser.parse_args()

    run = args.run.resolve()
    pruned_m = json.loads((run / "results/metrics/pruned.json").read_text())
    metric = next(iter(pruned_m["metrics"]))  # the family's headline metric comes first
    full_m = json.loads((run / "results/metrics/pruned_finetuned.json").read_text())
    pruned, full = pruned_m["metrics"][metric], full_m["metrics"][metric]
    rows = [{"finetune": "none (pruned)", metric: round(pruned, 4)},
            _row(run / "results", "full", metric, pruned, full)]
    for r in args.ranks:  # r = 0: the full finetune again, timed beside the LoRA runs
        dest = run.parent / (f"{run.name}-lora-r{r}{'-bn' if args.train_bn else ''}" if r else f"{run.name}-full")
        _copy_chain(run, dest)
        overlay = dest / "lora.yaml"
        lora = {"lora": {"r": r, "train_bn": args.train_bn}} if r else {}
        overlay.write_text(yaml.safe_dump({"stages": {"finetune": lora}}))
        configs = [str(Path(c).resolve()) for c in args.configfile] + [str(overlay)]
        subprocess.run([sys.executable, "-m", "snakemake", "results/metrics/pruned_finetuned.json",
                        "results/export/pruned_finetuned.onnx", "--snakefile", str(REPO / "Snakefile"),
                        "--directory", str(dest), "--cores", "all", "--configfile", *configs], check=True)
        label = f"LoRA r={r}{' + BN' if args.train_bn else ''}" if r else "full (again, timed here)"
        rows.append(_row(dest / "results", label, metric, pruned, full))
    _print_table(rows, list(rows[1]))


def _print_table(rows: list[dict], columns: list[str]) -> None:
    """A Markdown table of `columns` (– where a row has no value)."""
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join("–" if row.get(c) is None else str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
