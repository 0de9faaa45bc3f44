"""The diffusion family (a class-conditional DDPM UNet on handwritten digits) behind the Task interface.

    task = DiffusionTask(); manifest = task.prepare_dataset(cfg["dataset"], Path("results/data"), seed=0)
    model = task.build_model(task.arch(cfg["model"], manifest))      # model.schedule: the noise schedule
    task.train_evaluator(manifest, cfg["evaluate"], torch.device("cpu"), 0, Path("results/data/evaluator.pt"))
    metrics = task.evaluate(model, val_loader, torch.device("cpu"),
                            {**cfg["evaluate"], "evaluator": "results/data/evaluator.pt"}, manifest)  # cond_acc, fid

The network is one denoising step, (x_t, t, label) -> predicted noise, where t is the diffusion
time as a fraction of the schedule in [0, 1): the exported graph and its inputs do not depend on
the number of steps, so INT8 calibration and parity draw valid inputs without the model. A stage
is scored by sampling: `samples_per_class` images per digit from a fixed noise seed, judged by a
digit classifier trained once per dataset (`train_evaluator`): `cond_acc` (the judge reads the
requested digit) and `fid` (Fréchet distance of the judge's features, samples against val).
While training picks its best epoch there is no judge: evaluate returns the val denoising loss.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ...contracts import input_size
from ...errors import UserError
from ...io import read_json, write_json
from ..base import Task
from . import data
from .frechet import feature_stats, frechet_distance
from .judge import DigitJudge, judge_outputs, load_judge, save_judge, train_judge
from .model import DiffusionUNet
from .schedule import NoiseSchedule, ddim_sample, ddim_timesteps, ddpm_sample, training_loss

__all__ = ["DiffusionTask", "schedule_of", "TASK"]

ARCHS = {"ddpm_unet": {}}  # sized by model.base / mults / attention keys
_NET_KEYS = ("base", "mults", "attn_levels", "time_dim", "context_tokens", "context_dim", "attn_dim")
_SCHEDULE_KEYS = ("timesteps", "beta_schedule")
EVAL_DEFAULTS = {"samples_per_class": 20, "sampler": "ddpm", "ddim_steps": 50, "sample_seed": 0,
                 "grid_per_class": 8, "judge": {"epochs": 20, "patience": 3, "lr": 0.001, "width": 32}}


def schedule_of(model) -> NoiseSchedule:
    """The noise schedule a network was trained with: its attribute, or an exported model's metadata."""
    if isinstance(getattr(model, "schedule", None), NoiseSchedule):
        return model.schedule
    kwargs = model.metadata["kwargs"]  # export.runtime.OrtModel
    return NoiseSchedule(kwargs["timesteps"], kind=kwargs["beta_schedule"])


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    return images * 2 - 1  # loader images in [0, 1] -> the network's [-1, 1]


class _Criterion:
    """(model, batch) -> (loss, items): L1 between the predicted and the true noise at a random step."""

    def __call__(self, model: nn.Module, batch: dict):
        loss = training_loss(model, to_model_range(batch["images"]), batch["labels"], schedule_of(_unwrap(model)))
        return loss, {"l1": float(loss.detach())}


def _on(model, device):
    """The network as a CPU-tensor denoiser that runs on `device` (evaluation keeps its noise on the CPU)."""
    return lambda x, t, y: model(x.to(device), t.to(device), y.to(device)).cpu()


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel


class DiffusionTask(Task):
    family = "diffusion"
    metric_keys = ("cond_acc", "fid", "val_loss")
    input_names = ("x_t", "t", "label")
    output_names = ("noise",)

    def prepare_dataset(self, dataset_cfg: dict, out_dir: Path, seed: int) -> dict:
        return data.prepare(dataset_cfg, Path(out_dir), seed)

    def arch(self, model_cfg: dict, manifest: dict) -> dict:
        name = model_cfg["name"]
        if name not in ARCHS:
            raise UserError(f"model.name: {name!r} is not a diffusion network (use {', '.join(ARCHS)})")
        levels = len(model_cfg["mults"])
        h, w = input_size(model_cfg["imgsz"])
        if h != w or h % 2 ** (levels - 1):
            raise UserError(f"model.imgsz: {model_cfg['imgsz']} must be one number divisible by "
                            f"{2 ** (levels - 1)} (the UNet halves it {levels - 1} times: model.mults has {levels} levels)")
        bad = [lvl for lvl in model_cfg["attn_levels"] if lvl >= levels]
        if bad:
            raise UserError(f"model.attn_levels: level {bad[0]} does not exist (model.mults has levels 0..{levels - 1})")
        kwargs = {"in_channels": 1, "num_classes": len(manifest["names"]),
                  **{k: model_cfg[k] for k in _NET_KEYS + _SCHEDULE_KEYS}}
        kwargs["mults"], kwargs["attn_levels"] = list(kwargs["mults"]), list(kwargs["attn_levels"])
        return {"family": self.family, "name": name, "kwargs": kwargs}

    def build_model(self, arch: dict) -> nn.Module:
        if arch["name"] == "judge":  # the family's evaluator (results/data/evaluator.pt)
            return DigitJudge(**arch["kwargs"])
        kwargs = dict(arch["kwargs"])
        schedule = {k: kwargs.pop(k) for k in _SCHEDULE_KEYS}
        model = DiffusionUNet(**kwargs)
        model.schedule = NoiseSchedule(schedule["timesteps"], kind=schedule["beta_schedule"])
        return model

    def loader(self, manifest, split, *, train, imgsz, batch_size, workers, seed, augment=None) -> DataLoader:
        return data.loader(manifest, split, train=train, imgsz=imgsz, batch_size=batch_size, workers=workers,
                           seed=seed)

    def criterion(self, model, train_cfg):
        return _Criterion()

    def example_input(self, imgsz, batch=1, generator=None):
        h, w = input_size(imgsz)
        return (torch.randn(batch, 1, h, w, generator=generator), torch.rand(batch, generator=generator),
                torch.randint(0, len(data.NAMES), (batch,), generator=generator))

    def model_inputs(self, batch, generator=None):
        """Val images noised to a random time: x_t = cos(πt/2)·x0 + sin(πt/2)·ε, a schedule-free
        stand-in for the model's own ᾱ(t) that spans every noise level (calibration, parity)."""
        x0 = to_model_range(batch["images"])
        t = torch.rand(len(x0), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        angle = (t * math.pi / 2).view(-1, 1, 1, 1)
        return torch.cos(angle) * x0 + torch.sin(angle) * noise, t, batch["labels"]

    # --- evaluation -------------------------------------------------------------------------

    def train_evaluator(self, manifest, eval_cfg, device, seed, out_path):
        cfg = {**EVAL_DEFAULTS["judge"], **eval_cfg.get("judge", {})}
        size = manifest["splits"]["train"][0]["size"][0]
        loaders = [self.loader(manifest, split, train=split == "train", imgsz=size, batch_size=64, workers=0,
                               seed=seed) for split in ("train", "val")]
        judge, info = train_judge(*loaders, epochs=cfg["epochs"], patience=cfg["patience"], lr=cfg["lr"], seed=seed,
                                  device=device, num_classes=len(manifest["names"]), width=cfg["width"],
                                  log=logging.getLogger("slimflow").info)
        info = {**info, "val_acc_per_class": dict(zip(manifest["names"], info["val_acc_per_class"])), "imgsz": size}
        save_judge(out_path, judge, info)
        return info

    @torch.no_grad()
    def _val_loss(self, model, loader, device, schedule: NoiseSchedule) -> float:
        """The training loss on the val split at the same steps and noise every time (a CPU generator)."""
        generator = torch.Generator().manual_seed(0)
        total, n = 0.0, 0
        for batch in loader:
            x0, labels = to_model_range(batch["images"]), batch["labels"]
            total += float(training_loss(_on(model, device), x0, labels, schedule, generator)) * len(x0)
            n += len(x0)
        return total / max(n, 1)

    def sample(self, model, labels: torch.Tensor, imgsz: int, eval_cfg: dict, device) -> torch.Tensor:
        """Images in [0, 1] (N, 1, H, W) for `labels`, from the evaluation's fixed noise seed."""
        cfg = {**EVAL_DEFAULTS, **eval_cfg}
        schedule = schedule_of(model)
        generator = torch.Generator().manual_seed(cfg["sample_seed"])
        shape = (len(labels), 1, imgsz, imgsz)

        if cfg["sampler"] == "ddim":
            x0 = ddim_sample(_on(model, device), labels, schedule, shape, generator, steps=cfg["ddim_steps"])
        else:
            x0 = ddpm_sample(_on(model, device), labels, schedule, shape, generator)
        return (x0.clamp(-1, 1) + 1) / 2

    def network_calls(self, model, eval_cfg):
        cfg = {**EVAL_DEFAULTS, **eval_cfg}
        return len(ddim_timesteps(schedule_of(model).T, cfg["ddim_steps"])) if cfg["sampler"] == "ddim" \
            else schedule_of(model).T

    @torch.no_grad()
    def evaluate(self, model, loader, device, eval_cfg, manifest, predictions_path=None):
        model.eval()
        schedule = schedule_of(model)
        metrics = {"val_loss": round(self._val_loss(model, loader, device, schedule), 6)}
        if not eval_cfg.get("evaluator"):  # training's per-epoch check: no judge yet
            return metrics
        cfg = {**EVAL_DEFAULTS, **eval_cfg}
        judge, _ = load_judge(eval_cfg["evaluator"])
        n_classes = len(manifest["names"])
        labels = torch.arange(n_classes).repeat_interleave(cfg["samples_per_class"])
        imgsz = loader.dataset[0]["images"].shape[-1]
        samples = self.sample(model, labels, imgsz, cfg, device)
        logits, features = judge_outputs(judge, samples)
        val_images = torch.cat([batch["images"] for batch in loader])
        _, val_features = judge_outputs(judge, val_images)
        hits = (logits.argmax(1) == labels).float()
        metrics["cond_acc"] = round(float(hits.mean()), 4)
        metrics["fid"] = round(frechet_distance(*feature_stats(features), *feature_stats(val_features)), 4)
        if predictions_path is not None:
            per_class = cfg["grid_per_class"]
            keep = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(n_classes)])
            pixels = (samples[keep, 0] * 255).round().to(torch.uint8)
            by_class = {name: round(float(hits[labels == c].mean()), 4) for c, name in enumerate(manifest["names"])}
            write_json(predictions_path, {"labels": labels[keep].tolist(), "judged": logits.argmax(1)[keep].tolist(),
                                          "metrics": metrics, "cond_acc_per_class": by_class,
                                          "samples": pixels.tolist()})
        return {k: metrics[k] for k in self.metric_keys}

    def image_loader(self, paths, *, imgsz, batch_size):
        raise UserError("predict: a diffusion model generates digits instead of reading images; each stage's "
                        "samples are in results/metrics/<stage>.predictions.json and the report's grids")

    def fitness(self, metrics):
        return metrics["cond_acc"] if "cond_acc" in metrics else -metrics["val_loss"]

    def report_figures(self, manifest, predictions, out_dir):
        """A grid of samples per stage: one row per digit, titled with its scores."""
        from .report import sample_grids  # matplotlib only where the report runs
        return sample_grids({stage: read_json(path) for stage, path in predictions.items()}, manifest["names"],
                            Path(out_dir))

    def evaluator_summary(self, evaluator, predictions):
        """The judge's val accuracy (overall, per digit) as the ceiling of each stage's cond_acc."""
        from .report import judge_ceiling
        sentence, table = judge_ceiling(evaluator, predictions)
        heading = "Per digit (cond_acc of each stage's samples; judge: the val split's digits):"
        return sentence, f"{sentence} {heading}\n\n{table}"

    def keep_width_modules(self, model):
        return model.keep_width_modules() if isinstance(model, DiffusionUNet) else []

    def int8_float_modules(self, model):
        return [model.out]  # the predicted noise: its scale sets every sampling step's mean


TASK = DiffusionTask()
