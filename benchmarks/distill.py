"""Plain finetuning against finetuning with distillation, of the same pruned model, at equal epochs.

    python benchmarks/distill.py runs/default --configfile config/config.yaml --teachers none sparse baseline

RUN is a finished chain (its results/ holds pruned.pt and the plainly finetuned
pruned_finetuned.pt with their metrics). For each teacher, RUN's results up to the pruned model
are copied to RUN-distill-<teacher>/, a config laid over the run's sets `stages.finetune.distill`
(that teacher, --weight, --temperature; the run's finetune epochs), and `snakemake` finetunes
and evaluates only what that changes. `none` finetunes plainly again, timed beside the others.
The table compares accuracy, how much of the plain finetune's recovery (from `pruned` to
`pruned_finetuned`) each reaches, and seconds per epoch (the teacher's forward pass costs time).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from finetunes import compare_finetunes, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished chain's folder (holds results/)")
    parser.add_argument("--configfile", nargs="+", required=True, help="the config files the run used")
    parser.add_argument("--teachers", nargs="+", choices=("none", "sparse", "baseline"), default=["sparse"],
                        help="none: a plain finetune, timed alike")
    parser.add_argument("--weight", type=float, default=1.0, help="stages.finetune.distill.weight")
    parser.add_argument("--temperature", type=float, default=2.0, help="stages.finetune.distill.temperature")
    args = parser.parse_args()
    distill = {"weight": args.weight, "temperature": args.temperature}
    variants = [("distill-none", "plain (again, timed here)", {}) if teacher == "none" else
                (f"distill-{teacher}", f"distill from {teacher} (w={args.weight:g}, T={args.temperature:g})",
                 {"distill": {"teacher": teacher, **distill}}) for teacher in args.teachers]
    rows = compare_finetunes(args.run, args.configfile, "plain", variants)
    print_table(rows, [c for c in rows[1] if c not in ("trainable params", "trainable share", "adapter KiB")])


if __name__ == "__main__":
    main()
