"""The contract between a model family and the rest of slimflow.

A family is a sub-package of `pipeline_lib.tasks` that exposes `TASK`, an instance of a `Task`
subclass. The engine, the slimming code and the steps see only this interface, so a new family
never touches them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["Task"]


class Task(ABC):
    family: str
    metric_keys: tuple[str, ...]

    @abstractmethod
    def prepare_dataset(self, dataset_cfg: dict, out_dir: Path, seed: int) -> dict:
        """Validate (or generate) the dataset once; return the manifest written to dataset.json."""

    @abstractmethod
    def arch(self, model_cfg: dict, manifest: dict) -> dict:
        """The architecture spec {"family", "name", "kwargs"} that `build_model` turns into a network."""

    @abstractmethod
    def build_model(self, arch: dict) -> nn.Module: ...

    @abstractmethod
    def loader(self, manifest: dict, split: str, *, train: bool, imgsz: int, batch_size: int,
               workers: int, seed: int, augment: dict | None = None) -> DataLoader: ...

    @abstractmethod
    def criterion(self, model: nn.Module, train_cfg: dict):
        """A callable (model, batch) -> (loss, {name: float}) for the engine."""

    @abstractmethod
    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, eval_cfg: dict,
                 manifest: dict, predictions_path: Path | None = None) -> dict[str, float]: ...

    @abstractmethod
    def fitness(self, metrics: dict[str, float]) -> float:
        """One number to pick the best epoch by (higher is better)."""

    def example_input(self, imgsz: int, batch: int = 1) -> torch.Tensor:
        return torch.rand(batch, 3, imgsz, imgsz)

    def keep_width_modules(self, model: nn.Module) -> list[nn.Module]:
        """Modules whose output channels the pruner must not change (e.g. prediction heads)."""
        return []
