"""What `train.loggers: [mlflow]` costs: importing mlflow, and recording stages through the engine's
MLflowLogger into a scratch file store (the default config's `train` settings as params).

    python benchmarks/mlflow_cost.py --stages 2 --epochs 40

Prints one line per stage and the import times; writes nothing outside a temporary folder.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROW = {"train/box": 0.05, "train/obj": 0.02, "train/cls": 0.04, "lr/pg0": 1e-3, "lr/pg1": 1e-3, "lr/pg2": 1e-3,
       "time_s": 10.0}
VALIDATION = {"metrics/mAP50_95": 0.6, "metrics/mAP50": 0.88, "metrics/precision": 0.9, "metrics/recall": 0.8,
              "fitness": 0.67}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--val-interval", type=int, default=10)
    args = parser.parse_args()
    start = time.perf_counter()
    from pipeline_lib.config import defaults
    from pipeline_lib.engine.loggers import MLflowLogger, Tracking
    loaded = time.perf_counter()
    import mlflow  # noqa: F401  (timed alone: the cost a training job pays only when mlflow is configured)
    imported = time.perf_counter()
    params = defaults()["train"]
    with tempfile.TemporaryDirectory() as scratch:
        for stage in range(1, args.stages + 1):
            t0 = time.perf_counter()
            logger = MLflowLogger(Tracking(f"stage{stage}", params, Path(scratch) / "mlruns"))
            t1 = time.perf_counter()
            for epoch in range(1, args.epochs + 1):
                logger.log_row({"epoch": epoch, **ROW, **(VALIDATION if epoch % args.val_interval == 0 else {})})
            t2 = time.perf_counter()
            logger.close({"fitness": 0.67, "metrics": {"mAP50_95": 0.6}, "epoch": args.epochs})
            print(f"stage {stage}: run created, train settings logged {1000 * (t1 - t0):.0f} ms, "
                  f"{args.epochs} rows {1000 * (t2 - t1):.0f} ms ({1000 * (t2 - t1) / args.epochs:.1f} ms a row), "
                  f"in all {1000 * (time.perf_counter() - t0):.0f} ms")
    print(f"import torch and pipeline_lib {loaded - start:.2f} s, then import mlflow {imported - loaded:.2f} s")


if __name__ == "__main__":
    main()
