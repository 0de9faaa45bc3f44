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
import json
import subprocess
import sys
from pathlib import Path

import yaml

from lora import REPO, _copy_chain, _print_table, _row  # the same copy of a chain and the same table row as the LoRA benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished chain's folder (holds results/)")
    parser.add_argument("--configfile", nargs="+", required=True, help="the config files the run used")
    parser.add_argument("--teachers", nargs="+", choices=("none", "sparse", "baseline"), default=["sparse"],
                        help="none: a plain finetune, timed alike")
    parser.add_argument("--weight", type=float, default=1.0, help="stages.finetune.distill.weight")
    parser.add_argument("--temperature", type=float, default=2.0, help="stages.finetune.distill.temperature")
    args = parser.parse_args()

    run = args.run.resolve()
    pruned_m = json.loads((run / "results/metrics/pruned.json").read_text())
    metric = next(iter(pruned_m["metrics"]))  # the family's headline metric comes first
    plain_m = json.loads((run / "results/metrics/pruned_finetuned.json").read_text())
    pruned, plain = pruned_m["metrics"][metric], plain_m["metrics"][metric]
    rows = [{"finetune": "none (pruned)", metric: round(pruned, 4)},
            _row(run / "results", "plain", metric, pruned, plain)]
    for teacher in args.teachers:
        dest = run.parent / f"{run.name}-distill-{teacher}"
        _copy_chain(run, dest)
        overlay = dest / "distill.yaml"
        distill = {"teacher": teacher, "weight": args.weight, "temperature": args.temperature}
        overlay.write_text(yaml.safe_dump({"stages": {"finetune": {} if teacher == "none" else {"distill": distill}}}))
        configs = [str(Path(c).resolve()) for c in args.configfile] + [str(overlay)]
        subprocess.run([sys.executable, "-m", "snakemake", "results/metrics/pruned_finetuned.json",
                        "--snakefile", str(REPO / "Snakefile"), "--directory", str(dest), "--cores", "all",
                        "--configfile", *configs], check=True)
        label = "plain (again, timed here)" if teacher == "none" else \
            f"distill from {teacher} (w={args.weight:g}, T={args.temperature:g})"
        rows.append(_row(dest / "results", label, metric, pruned, plain))
    _print_table(rows, [c for c in rows[1] if c not in ("trainable params", "trainable share", "adapter KiB")])


if __name__ == "__main__":
    main()
