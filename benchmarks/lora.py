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
from pathlib import Path

from finetunes import compare_finetunes, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished chain's folder (holds results/)")
    parser.add_argument("--configfile", nargs="+", required=True, help="the config files the run used")
    parser.add_argument("--ranks", nargs="+", type=int, default=[4, 8], help="0: a full finetune, timed alike")
    parser.add_argument("--train-bn", action="store_true", help="also train BatchNorm (lora.train_bn: true)")
    args = parser.parse_args()
    bn = "-bn" if args.train_bn else ""
    variants = [(f"lora-r{r}{bn}", f"LoRA r={r}{' + BN' if args.train_bn else ''}",
                 {"lora": {"r": r, "train_bn": args.train_bn}}) if r else  # r = 0: the full finetune, timed here
                ("full", "full (again, timed here)", {}) for r in args.ranks]
    rows = compare_finetunes(args.run, args.configfile, "full", variants,
                             targets=("results/metrics/pruned_finetuned.json", "results/export/pruned_finetuned.onnx"))
    print_table(rows, list(rows[1]))


if __name__ == "__main__":
    main()
