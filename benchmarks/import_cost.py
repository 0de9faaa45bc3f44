"""What each pipeline step's job pays in imports before it does any work: a fresh Python process
imports the step function from `pipeline_lib.steps` and `pipeline_lib.runner`, as every
`workflow/scripts/*.py` adapter does, then the family's Task (`get_task`, which every step
loads once it runs), and reports the seconds of both (median of --runs processes) and which
heavy libraries were loaded by then.

    python benchmarks/import_cost.py --runs 5 --family detection
    PYTHONPATH=/path/to/other/checkout python benchmarks/import_cost.py   # another tree's cost
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STEPS = ("prepare_dataset", "train_stage", "prune_stage", "evaluate_stage", "train_evaluator", "export_stage",
         "quantize_stage", "evaluate_onnx_stage", "torch_latency_stage", "report", "sweep_report")
HEAVY = ("torch", "torchvision", "torch._dynamo", "onnx", "onnxruntime", "pandas", "torch_pruning", "matplotlib")

# Run in the fresh process: the import timed from inside, so the interpreter's own start is left out.
PROBE = """
import json, sys, time
start = time.perf_counter()
from pipeline_lib.steps import {step}
import pipeline_lib.runner
seconds = time.perf_counter() - start
from pipeline_lib.tasks import get_task
get_task({family!r})
total = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "total": total, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def probe(step: str, family: str) -> dict:
    """One fresh process's import of `step`, then of `family`'s Task: {"seconds", "total", "loaded"}."""
    code = PROBE.format(step=step, family=family, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per step (the median is shown)")
    parser.add_argument("--family", default="detection", help="the family whose Task each step then loads")
    parser.add_argument("steps", nargs="*", default=STEPS, choices=STEPS, metavar="STEP",
                        help=f"step functions of pipeline_lib.steps (default: all of {', '.join(STEPS)})")
    args = parser.parse_args()
    import pipeline_lib
    print(f"pipeline_lib from {pipeline_lib.__file__}; median of {args.runs} fresh processes; family {args.family}")
    print(f"{'step':<22}{'step s':>7}{'+family s':>10}  heavy modules loaded (with the family)")
    for step in args.steps:
        runs = [probe(step, args.family) for _ in range(args.runs)]
        seconds, total = (statistics.median(r[key] for r in runs) for key in ("seconds", "total"))
        print(f"{step:<22}{seconds:>7.2f}{total:>10.2f}  {' '.join(runs[-1]['loaded']) or '-'}", flush=True)


if __name__ == "__main__":
    main()
