"""Predictions on your own images, through the same pre- and post-processing as evaluation.

    predict(model_path="results/export/pruned_finetuned.int8.onnx", source="photos/", out_dir="predictions")
    # predictions/predictions.json: {"model", "family", "imgsz", "names", "images": [{"image", "predictions", "drawn"}]}
    # predictions/<image>: the image with its predictions drawn (for a family that draws)

A checkpoint (.pt) runs in PyTorch, an exported model (.onnx, FP32 or INT8) in ONNX Runtime; the
family comes from the checkpoint or the ONNX metadata. The family's `image_loader` preprocesses
as its val loader does and its `predict` is the function its `evaluate` scores, so a prediction
here equals the one the metrics were computed from.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .config import defaults
from .engine import select_device
from .errors import UserError
from .export.runtime import load_onnx
from .io import write_json
from .preflight import check_image
from .tasks import load_model

__all__ = ["IMAGE_SUFFIXES", "DEPLOY_CONF", "list_images", "predict"]

log = logging.getLogger("slimflow")

# The score a deployed detector keeps a box from (ultralytics saves its predictions from 0.25); evaluation
# keeps nearly all (evaluate.conf_thres, 0.001) because mAP integrates over every score.
DEPLOY_CONF = 0.25

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}


def list_images(source: str | os.PathLike) -> list[Path]:
    """An image file, or every image under a folder (sorted); UserError when there is none."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise UserError(f"{source}: no such image or folder")
    images = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return images


def _open(model_path: Path, device: str, threads: int):
    """(task, model, imgsz, names, device) of a checkpoint or an exported model."""
    if model_path.suffix == ".onnx":
        loaded = load_onnx(model_path, threads)
        return loaded.task, loaded.model, loaded.imgsz, loaded.meta.get("names") or [], torch.device("cpu")
    if model_path.suffix != ".pt":
        raise UserError(f"{model_path}: expected a checkpoint (.pt) or an exported model (.onnx)")
    loaded = load_model(model_path)
    dev = select_device(device)
    return loaded.task, loaded.model.to(dev), loaded.imgsz, loaded.ckpt["meta"].get("names") or [], dev


def predict(*, model_path: str | os.PathLike, source: str | os.PathLike, out_dir: str | os.PathLike,
            config: dict | None = None, batch_size: int = 8, device: str = "cpu", threads: int = 1,
            eval_threshold: bool = False) -> dict:
    """Predict every image of `source`; write out_dir/predictions.json and the drawn images.

    Thresholds come from `config["evaluate"]` when the config is for the model's family, else
    from the family's defaults; a score threshold (`conf_thres`) is raised to `DEPLOY_CONF` unless
    `eval_threshold` (then the predictions are exactly those evaluation scored).
    """
    model_path, source, out_dir = Path(model_path), Path(source), Path(out_dir)
    if not model_path.is_file():  # named before the images are listed; read only after they are checked
        raise UserError(f"{model_path}: no such model file (give a .pt checkpoint or an exported .onnx)")
    paths = list_images(source)
    for path in paths:  # as a dataset's images are checked: a 16-bit image would reach the model saturated
        check_image(path)
    task, model, imgsz, names, dev = _open(model_path, device, threads)
    eval_cfg = config["evaluate"] if config and config.get("task") == task.family else defaults(task.family)["evaluate"]
    if "conf_thres" in eval_cfg and not eval_threshold:
        eval_cfg = {**eval_cfg, "conf_thres": max(eval_cfg["conf_thres"], DEPLOY_CONF)}
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    with torch.no_grad():
        for batch in task.image_loader(paths, imgsz=imgsz, batch_size=batch_size):
            for prediction in task.predict(model, batch, dev, eval_cfg):
                path = paths[len(records)]
                drawn = out_dir / (path.relative_to(source) if source.is_dir() else path.name)
                drawn.parent.mkdir(parents=True, exist_ok=True)
                record = {"image": str(path), "predictions": prediction}
                if task.draw(path, prediction, names, drawn):
                    record["drawn"] = str(drawn)
                records.append(record)
    result = {"model": str(model_path), "family": task.family, "imgsz": imgsz, "names": names,
              "evaluate": eval_cfg, "images": records}
    write_json(out_dir / "predictions.json", result)
    log.info("%d images -> %s", len(records), out_dir / "predictions.json")
    return result
