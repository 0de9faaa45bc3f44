"""Optional experiment trackers that receive the engine's per-epoch rows (the same numbers as
results/train/{stage}.csv), chosen by `train.loggers` in the config; none by default.

    loggers = make_loggers(["tensorboard", "mlflow"], Path("results/work/baseline"),
                           Tracking(run_name="baseline", params=train_cfg, mlflow_store=Path("results/mlruns")))
    for logger in loggers: logger.log_row({"epoch": 1, "train/box": 0.12, "metrics/mAP50_95": 0.3})
    for logger in loggers: logger.close(best={"fitness": 0.3, "metrics": {"mAP50_95": 0.3}, "epoch": 1})

- tensorboard: results/work/{stage}/tensorboard/ (`tensorboard --logdir results/work`)
- mlflow: one run per stage in the experiment "slimflow" of a local file store, results/mlruns
  (`mlflow ui --backend-store-uri results/mlruns`); no server, no network
- csv: results/work/{stage}/epochs.csv, rewritten after every epoch, so a running stage can be
  read (results/train/{stage}.csv, the same rows, is written once the stage is done)
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ..errors import UserError
from ..io import atomic_path

__all__ = ["EpochLogger", "Tracking", "TensorBoardLogger", "MLflowLogger", "CsvLogger", "make_loggers"]


class EpochLogger(Protocol):
    def log_row(self, row: dict[str, Any]) -> None: ...

    def close(self, best: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Tracking:
    """What a tracker records about the stage besides its rows."""

    run_name: str = "train"  # the stage's lineage label
    params: dict = field(default_factory=dict)  # the stage's resolved `train` settings
    mlflow_store: Path | None = None  # the MLflow file store, a folder under results/


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}


class TensorBoardLogger:
    """Every numeric column of a row as a scalar at step `row["epoch"]`, under the column's name."""

    def __init__(self, logdir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("train.loggers: tensorboard needs the tensorboard package: "
                            "pip install -e \".[tb]\" (or remove it from train.loggers)") from None
        self.writer = SummaryWriter(log_dir=str(logdir))

    def log_row(self, row: dict[str, Any]) -> None:
        for key, value in _numbers(row).items():
            self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self, best: dict[str, Any]) -> None:
        self.writer.close()


def _flat(settings: dict, prefix: str = "") -> dict[str, str]:
    """{"lora": {"r": 8}} -> {"lora.r": "8"}: MLflow's params are flat strings."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": str(value)})
    return out


class MLflowLogger:
    """One MLflow run per stage: the stage's settings as params, each row's numbers as metrics at
    step `epoch`, and the best epoch's metrics as `best/<name>` when the stage ends."""

    EXPERIMENT = "slimflow"

    def __init__(self, tracking: Tracking):
        # MLflow 3 keeps the file store working but refuses it unless asked (its SQL store needs
        # the full mlflow package and alembic); a user's own setting wins.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException
        except ImportError:
            raise UserError("train.loggers: mlflow needs the mlflow-skinny package: pip install -e \".[tracking]\" "
                            "(or remove it from train.loggers)") from None
        self.client = MlflowClient(tracking_uri=Path(tracking.mlflow_store).resolve().as_uri())
        try:
            experiment = self.client.create_experiment(self.EXPERIMENT)
        except MlflowException:  # it exists (another stage, maybe running at the same time, made it)
            experiment = self.client.get_experiment_by_name(self.EXPERIMENT).experiment_id
        self.run_id = self.client.create_run(experiment, run_name=tracking.run_name,
                                             tags={"slimflow.stage": tracking.run_name}).info.run_id
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in _flat(tracking.params).items()])

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def log_row(self, row: dict[str, Any]) -> None:
        self._log(_numbers(row), row["epoch"])

    def close(self, best: dict[str, Any]) -> None:
        final = {f"best/{k}": v for k, v in {**best.get("metrics", {}), "fitness": best.get("fitness")}.items()}
        self._log({**_numbers(final), "best/epoch": float(best.get("epoch", 0))}, best.get("epoch", 0))
        self.client.set_terminated(self.run_id)


class CsvLogger:
    """The stage's rows so far, rewritten whole (atomically) after each epoch; a resumed stage
    keeps the rows of the epochs it does not repeat."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = pd.read_csv(path).to_dict("records") if path.is_file() else []

    def log_row(self, row: dict[str, Any]) -> None:
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False)

    def close(self, best: dict[str, Any]) -> None:
        pass


LOGGERS = {"tensorboard": lambda workdir, tracking: TensorBoardLogger(workdir / "tensorboard"),
           "mlflow": lambda workdir, tracking: MLflowLogger(tracking),
           "csv": lambda workdir, tracking: CsvLogger(workdir / "epochs.csv")}


def make_loggers(names: list[str], workdir: Path, tracking: Tracking = Tracking()) -> list[EpochLogger]:
    """The loggers `names` asks for, writing beside the stage's resume state in `workdir` (MLflow:
    to `tracking.mlflow_store`)."""
    if "mlflow" in names and tracking.mlflow_store is None:
        raise ValueError("train.loggers: mlflow needs tracking.mlflow_store (the training step gives results/mlruns)")
    return [LOGGERS[name](Path(workdir), tracking) for name in names]
