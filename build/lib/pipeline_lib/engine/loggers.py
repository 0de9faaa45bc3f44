"""Optional experiment trackers that receive the engine's per-epoch rows (the same numbers as
results/train/{stage}.csv), chosen by `train.loggers` in the config; none by default.

    loggers = make_loggers(["tensorboard"], Path("results/work/baseline"))   # -> results/work/baseline/tensorboard/
    for logger in loggers: logger.log_row({"epoch": 1, "train/box": 0.12, "metrics/mAP50_95": 0.3})
    # tensorboard --logdir results     (every stage, iteration and sweep point as its own run)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..errors import UserError

__all__ = ["EpochLogger", "TensorBoardLogger", "make_loggers"]


class EpochLogger(Protocol):
    def log_row(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


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
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


LOGGERS = {"tensorboard": lambda workdir: TensorBoardLogger(workdir / "tensorboard")}


def make_loggers(names: list[str], workdir: Path) -> list[EpochLogger]:
    """The loggers `names` asks for, writing beside the stage's resume state in `workdir`."""
    return [LOGGERS[name](Path(workdir)) for name in names]
