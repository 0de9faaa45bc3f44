"""The contract between a model family and the rest of slimflow.

A family is a sub-package `pipeline_lib/tasks/<family>/` that exposes `TASK`, an instance of a
`Task` subclass, and owns `schema.yaml`, the JSON-schema fragment of its config keys (merged
under `task: <family>` by `pipeline_lib.config`). The engine, the slimming code, the export and
the steps see only what this module and `pipeline_lib.contracts` (Manifest, Batch, Criterion,
ImageSize) declare, so adding a family touches nothing outside its folder, `config/`, `tests/`
and docs.

    task = get_task("detection")
    manifest = task.prepare_dataset(cfg["dataset"], Path("results/data"), seed=0)   # a Manifest
    model = task.build_model(task.arch(cfg["model"], manifest))
    batch = next(iter(task.loader(manifest, "train", train=True, imgsz=128, batch_size=8, workers=0, seed=0)))
    loss, items = task.criterion(model, cfg["train"])(model, batch)                  # batch["images"]: (B, 3, H, W)
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..contracts import Batch, Criterion, ImageSize, Manifest, input_size

__all__ = ["Task", "ResizedImages"]


class ResizedImages(Dataset):
    """The user's image files resized to (h, w), float32 in [0, 1]: `Task.image_loader`'s default."""

    def __init__(self, paths: Sequence[str | Path], size: tuple[int, int]):
        self.paths, self.size = [Path(p) for p in paths], size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        # imported here, not at the top: every job imports this contract, and torchvision costs ~1.5 s
        import torchvision.transforms.v2.functional as F
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            image = F.pil_to_tensor(im.convert("RGB"))  # uint8 (3, H, W)
        return {"images": F.resize(image, list(self.size), antialias=True).float() / 255}


class Task(ABC):
    """One model family. Subclasses set the class attributes and implement the abstract methods."""

    family: str  # the `task:` value that selects it; equals its folder's name
    metric_keys: tuple[str, ...]  # keys of evaluate()'s result; the first is the headline accuracy
    output_names: tuple[str, ...] = ("output",)  # names of the exported ONNX graph's outputs
    # The network's inputs, in forward()'s order: the images, or more (the denoiser's x_t, t, label).
    input_names: tuple[str, ...] = ("images",)
    # The exported graph accepts any image height and width that is a multiple of this (0: fixed at
    # the trained size), and the sizes it is timed at besides the trained one (export.deploy.imgsz: null).
    dynamic_input: int = 0
    deploy_sizes: tuple[int, ...] = ()
    # The criterion's loss is summed over the batch's images (YOLOv5's loss x batch size) while its
    # logged items are per image: a distillation term is then scaled alike before it is added.
    loss_sums_over_batch: bool = False
    # A family that scores a stage with a model of its own (diffusion: a digit classifier that
    # judges the samples) sets HAS_EVALUATOR = True in its package's __init__.py (the workflow
    # reads it at parse time, without torch) and implements `train_evaluator`: the model is trained
    # once per dataset by its own step, and `evaluate` finds its path in eval_cfg["evaluator"]
    # (absent while training picks the best epoch).

    @abstractmethod
    def prepare_dataset(self, dataset_cfg: dict, out_dir: Path, seed: int) -> Manifest:
        """Validate (or generate into `out_dir`) the dataset once; every problem is a UserError naming the file."""

    @abstractmethod
    def arch(self, model_cfg: dict, manifest: Manifest) -> dict:
        """The architecture spec {"family", "name", "kwargs"} that `build_model` turns into a network."""

    @abstractmethod
    def build_model(self, arch: dict) -> nn.Module: ...

    @abstractmethod
    def loader(self, manifest: Manifest, split: str, *, train: bool, imgsz: ImageSize, batch_size: int,
               workers: int, seed: int, augment: dict | None = None) -> DataLoader:
        """Batches (see `Batch`) of `split`; `train=True` shuffles and augments with `augment`."""

    @abstractmethod
    def criterion(self, model: nn.Module, train_cfg: dict) -> Criterion: ...

    @abstractmethod
    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, eval_cfg: dict,
                 manifest: Manifest, predictions_path: Path | None = None) -> dict[str, float]:
        """Metrics (`metric_keys`) on the loader's split; `model` may be an ONNX Runtime stand-in
        (`pipeline_lib.export.runtime.OrtModel`), so only call it on image batches."""

    @abstractmethod
    def fitness(self, metrics: dict[str, float]) -> float:
        """One number to pick the best epoch by (higher is better)."""

    def train_evaluator(self, manifest: Manifest, eval_cfg: dict, device: torch.device, seed: int,
                        out_path: Path) -> dict:
        """Train the family's evaluator on the manifest's train split and save it to `out_path`
        (atomically); return what to record of it (e.g. its val accuracy). Only with HAS_EVALUATOR."""
        raise NotImplementedError(f"the {self.family} family has no evaluator")

    def distill_loss(self, student_out: Any, teacher_out: Any, cfg: dict) -> torch.Tensor:
        """Distillation term (a scalar, per image like the criterion's items) between what the
        student's train-mode forward returned and the teacher's output on the same images, in the
        same form (`pipeline_lib.distill.teacher_mode`). `cfg` is `stages.finetune.distill`
        (`temperature`, `weight`: the caller applies the weight). Exactly 0 when the two are equal.
        Default: the family has none."""
        from ..errors import UserError

        raise UserError(f"stages.finetune.distill: the {self.family} family has no distillation loss")

    def example_input(self, imgsz: ImageSize, batch: int = 1, generator: torch.Generator | None = None):
        """Random network inputs of the right shapes and ranges (tracing, FLOPs, latency, export
        parity): one tensor, or a tuple in `input_names` order for a network of several inputs."""
        return torch.rand(batch, 3, *input_size(imgsz), generator=generator)

    def model_inputs(self, batch: Batch, generator: torch.Generator | None = None):
        """The network's inputs for a loader batch in eval form (export parity on val data, INT8
        calibration), as `example_input` gives them. Default: the images."""
        return batch["images"]

    def network_calls(self, model: nn.Module, eval_cfg: dict) -> int:
        """Forward passes of the network per output at evaluation (a sampler's steps); the report
        multiplies the latency of one call by it. Default: 1."""
        return 1

    def keep_width_modules(self, model: nn.Module) -> list[nn.Module]:
        """Modules whose output channels the pruner must not change (prediction heads, embeddings)."""
        return []

    def residual_blocks(self, model: nn.Module) -> list[str]:
        """Names of the residual blocks y = x + f(x) that compute x once f is gone (an activation
        after the sum must leave x as it is), so that `prune.drop_blocks` may replace one by the
        identity when every channel inside f falls below the threshold. Default: none."""
        return []

    def int8_float_modules(self, model: nn.Module) -> list[nn.Module]:
        """Modules that INT8 keeps in float, with everything downstream of them (heads, decodes)."""
        return []

    def import_weights(self, path: Path, model_cfg: dict, manifest: Manifest | None) -> Any:
        """`model.weights`: the network initialised from a file the user has (the family's published
        formats, or a slimflow checkpoint), its arch from the file and its classes from `manifest`
        when given (None: the file's own, for `import-weights`). Returns `pipeline_lib.weights.Imported`.
        A file that would run code, or does not fit, is one UserError naming it. Default: none read."""
        from ..errors import UserError

        raise UserError(f"{path}: model.weights: the {self.family} family imports no weights (docs/WEIGHTS.md)")

    # Predictions on the user's own images (`python -m pipeline_lib predict`). A family's evaluate
    # goes through its own `predict`, so what a user sees is what the metrics were computed from.

    def image_loader(self, paths: Sequence[str | Path], *, imgsz: ImageSize, batch_size: int) -> DataLoader:
        """Batches of image files in order, preprocessed as `loader(..., train=False)` preprocesses
        the val split, with whatever `predict` needs to map outputs back to each image.
        Default: a plain resize to imgsz."""
        return DataLoader(ResizedImages(paths, input_size(imgsz)), batch_size=batch_size, shuffle=False)

    def predict(self, model: nn.Module, batch: Batch, device: torch.device, eval_cfg: dict) -> list[Any]:
        """One JSON-able prediction per image of an evaluation batch (from `loader(train=False)` or
        `image_loader`), in the original image's coordinates. `model` may be an `OrtModel`.
        Default: the network's raw outputs per image, by `output_names`."""
        outputs = model(batch["images"].to(device))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [{name: out[i].float().cpu().tolist() for name, out in zip(self.output_names, outputs)}
                for i in range(len(batch["images"]))]

    def draw(self, image_path: Path, prediction: Any, names: Sequence[str], out_path: Path) -> bool:
        """Draw `prediction` on the image into `out_path`; False when the family draws nothing
        (predict then writes the JSON only). Default: nothing."""
        return False

    # The run report (pipeline_lib.report_plots): a few val images drawn per stage, and figures of
    # the family's own evaluation. Both read the files `evaluate(predictions_path=...)` wrote.

    def report_samples(self, manifest: Manifest, predictions_path: Path, n: int) -> list[tuple[Path, Any]]:
        """Up to `n` val images (the same ones for every stage) with their predictions from an
        evaluate predictions file, each as (image path, prediction in the form `draw` takes).
        Default: none (the report then shows no sample predictions)."""
        return []

    def report_truth(self, manifest: Manifest, n: int) -> list[Any]:
        """The ground truth of `report_samples`' images, in the form `draw` takes (drawn beside each
        stage's predictions). Default: none (the samples then show predictions only)."""
        return []

    def evaluator_summary(self, evaluator: dict, predictions: dict[str, dict]) -> tuple[str, str]:
        """What the report says of the family's evaluator beside the stages' scores, from its report
        (evaluator.json) and each stage's predictions file ({stage label: its content}): one sentence
        for the report's first page, and a Markdown section for summary.md. Only with HAS_EVALUATOR."""
        raise NotImplementedError(f"the {self.family} family has no evaluator")

    def report_figures(self, manifest: Manifest, predictions: dict[str, Path], out_dir: Path) -> list[Path]:
        """Figures of the family's evaluation from each stage's predictions file ({stage label: path}),
        written as titled PNGs into `out_dir`; returns their paths. Default: none."""
        return []
