"""The pose family (top-down HRNet on COCO keypoints) behind slimflow's Task interface.

    task = PoseTask(); manifest = task.prepare_dataset(cfg["dataset"], Path("results/data"), seed=0)
    model = task.build_model(task.arch(cfg["model"], manifest))
    loader = task.loader(manifest, "val", train=False, imgsz=[128, 96], batch_size=32, workers=0, seed=0)
    metrics = task.evaluate(model, loader, torch.device("cpu"), cfg["evaluate"], manifest)   # AP, AP50, AP75, AR

A sample is one person crop; the network outputs one heatmap per keypoint at a quarter of the
input size (ONNX output "heatmaps"). `imgsz` is [height, width], both multiples of 32.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ...engine.utils import make_loader
from ...errors import UserError
from ...io import read_json, write_json
from ..base import Task, input_size
from .coco import check_sigmas, index_coco_keypoints
from .data import PoseDataset, lower_body
from .evaluate import COCO_SIGMAS, METRIC_KEYS, coco_keypoint_metrics, coco_results, predict
from .loss import JointsMSELoss, distill_loss
from .model import ARCHS, HRNet
from .synthetic import generate_coco_keypoints

__all__ = ["PoseTask", "EVAL_DEFAULTS", "TASK"]


def _limbs(manifest) -> list[tuple[int, int]] | None:
    """The dataset's skeleton (its keypoints file's `categories[].skeleton`, 1-based) as 0-based pairs;
    None for a manifest written before it kept one (then COCO's person limbs by name)."""
    return None if "skeleton" not in manifest else [(a - 1, b - 1) for a, b in manifest["skeleton"]]


def _val_images(manifest, n: int) -> list[tuple[int, Path]]:
    """(id, path) of the first n val images by id: the report's samples."""
    images = sorted(read_json(manifest["coco_gt"]["val"])["images"], key=lambda im: im["id"])[:n]
    return [(im["id"], Path(manifest["image_dirs"]["val"]) / im["file_name"]) for im in images]

# What evaluate assumes for keys a config leaves out (the schema fragment has the same defaults).
EVAL_DEFAULTS = {"flip_test": True, "sigmas": None, "detections": None}
_ARCH_KEYS = ("width", "stem", "bottlenecks", "modules", "blocks")


class _Criterion:
    """(model, batch) -> (loss, items): the engine's view of JointsMSELoss."""

    def __init__(self, hyp: dict):
        self.loss = JointsMSELoss(hyp.get("sigma", 2.0), hyp.get("use_target_weight", True))

    def __call__(self, model: nn.Module, batch: dict):
        return self.loss(model(batch["images"]), batch["joints"], batch["visible"])


class PoseTask(Task):
    family = "pose"
    metric_keys = METRIC_KEYS
    output_names = ("heatmaps",)

    def prepare_dataset(self, dataset_cfg: dict, out_dir: Path, seed: int) -> dict:
        root = dataset_cfg["path"]
        if root is None:
            syn = dataset_cfg["synthetic"]
            root = generate_coco_keypoints(Path(out_dir) / "pose", n_train=syn["n_train"], n_val=syn["n_val"],
                                           imgsz=syn["imgsz"], seed=seed, difficulty=syn["difficulty"])
        return {"task": self.family, **index_coco_keypoints(Path(root), Path(out_dir))}

    def arch(self, model_cfg: dict, manifest: dict) -> dict:
        name = model_cfg["name"]
        if name not in ARCHS:
            raise UserError(f"model.name: {name!r} is not an HRNet with task: pose (use {', '.join(ARCHS)})")
        h, w = input_size(model_cfg["imgsz"])
        if h % 32 or w % 32:
            raise UserError(f"model.imgsz: {[h, w]}: height and width must be multiples of 32 (HRNet's lowest "
                            "branch runs at 1/32 of the input)")
        kwargs = {"num_joints": len(manifest["names"]), **ARCHS[name]}
        for key in _ARCH_KEYS:  # null keeps the named architecture's value
            if model_cfg.get(key) is not None:
                kwargs[key] = model_cfg[key]
        kwargs["modules"], kwargs["blocks"] = list(kwargs["modules"]), list(kwargs["blocks"])
        return {"family": self.family, "name": name, "kwargs": kwargs}

    def build_model(self, arch: dict) -> nn.Module:
        return HRNet(**arch["kwargs"])

    def loader(self, manifest, split, *, train, imgsz, batch_size, workers, seed, augment=None) -> DataLoader:
        items = manifest["splits"][split]
        dataset = PoseDataset(items, input_size(imgsz), manifest["flip_pairs"], lower_body(manifest["names"]),
                              (augment or {}) if train else None, seed=seed)
        return make_loader(dataset, batch_size=batch_size, shuffle=train, workers=workers, seed=seed,
                           drop_last=train and len(items) > batch_size)

    def criterion(self, model, train_cfg):
        return _Criterion(train_cfg.get("loss", {}))

    def distill_loss(self, student_out, teacher_out, cfg):
        return distill_loss(student_out, teacher_out)

    def _sigmas(self, eval_cfg: dict, manifest: dict) -> list[float]:
        return check_sigmas(eval_cfg.get("sigmas") or COCO_SIGMAS, len(manifest["names"]), manifest["coco_gt"]["val"])

    def _detection_loader(self, path: str, loader: DataLoader, manifest: dict) -> DataLoader:
        """Crops of a COCO detection results file's person boxes, in place of the ground-truth boxes."""
        gt = read_json(manifest["coco_gt"]["val"])
        images = {im["id"]: im for im in gt["images"]}
        try:
            dets = read_json(path)
        except (OSError, ValueError) as e:
            raise UserError(f"evaluate.detections: {path}: cannot read COCO detection results ({e})") from None
        items = []
        for n, det in enumerate(dets if isinstance(dets, list) else []):
            im = images.get(det.get("image_id")) if isinstance(det, dict) else None
            if im is None:
                raise UserError(f"evaluate.detections: {path}: entry {n}: image_id {det.get('image_id') if isinstance(det, dict) else det!r} "
                                f"is not a val image of {manifest['coco_gt']['val']}")
            if det.get("category_id", manifest["category_id"]) != manifest["category_id"]:
                continue
            bbox = det.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise UserError(f"evaluate.detections: {path}: entry {n}: bbox {bbox!r} is not [x, y, w, h]")
            x, y, w, h = bbox
            if w > 0 and h > 0:
                items.append({"image": str(Path(manifest["image_dirs"]["val"]) / im["file_name"]), "image_id": im["id"],
                              "bbox": [x, y, w, h], "score": float(det.get("score", 1.0)),
                              "keypoints": [0.0] * 3 * len(manifest["names"]), "size": [im["width"], im["height"]]})
        if not items:
            raise UserError(f"evaluate.detections: {path}: no person boxes (expected [{{image_id, bbox, score}}, ...])")
        ds = loader.dataset
        dataset = PoseDataset(items, ds.size, seed=ds.seed)
        return make_loader(dataset, batch_size=loader.batch_size, shuffle=False, workers=0, seed=ds.seed)

    @torch.no_grad()
    def evaluate(self, model, loader, device, eval_cfg, manifest, predictions_path=None):
        cfg = {**EVAL_DEFAULTS, **(eval_cfg or {})}
        model.eval()
        sigmas = self._sigmas(cfg, manifest)
        if cfg["detections"]:
            loader = self._detection_loader(cfg["detections"], loader, manifest)
        people = predict(model, loader, manifest["flip_pairs"], cfg["flip_test"], device)
        results = coco_results(people, manifest["category_id"], sigmas)
        if predictions_path is not None:
            write_json(predictions_path, results)
        return coco_keypoint_metrics(manifest["coco_gt"]["val"], results, sigmas)

    def report_samples(self, manifest, predictions_path, n):
        """The first n val images (by id) with the people evaluate found on them, and the dataset's skeleton."""
        people = {}
        for result in read_json(predictions_path):
            people.setdefault(result["image_id"], []).append(result)
        return [(path, {"people": people.get(image_id, []), "skeleton": _limbs(manifest)})
                for image_id, path in _val_images(manifest, n)]

    def report_truth(self, manifest, n):
        """The annotated people of report_samples' images (a keypoint with v > 0 is drawn), with the skeleton."""
        people = {}
        for ann in read_json(manifest["coco_gt"]["val"])["annotations"]:
            people.setdefault(ann["image_id"], []).append({"keypoints": ann["keypoints"]})
        return [{"people": people.get(image_id, []), "skeleton": _limbs(manifest)}
                for image_id, _ in _val_images(manifest, n)]

    def draw(self, image_path, prediction, names, out_path):
        """Keypoints and limbs of COCO keypoint results on one image: a list of people (limbs by COCO's
        person names), or {"people", "skeleton"} (the dataset's own limbs, 0-based index pairs);
        raw heatmaps draw nothing."""
        people, skeleton = (prediction.get("people"), prediction.get("skeleton")) if isinstance(prediction, dict) \
            else (prediction, None)
        if not (isinstance(people, list) and all(isinstance(p, dict) and "keypoints" in p for p in people)):
            return False
        from .draw import draw_people
        draw_people(Path(image_path), people, names, Path(out_path), skeleton=skeleton)
        return True

    def fitness(self, metrics):
        return metrics["AP"]

    def import_weights(self, path, model_cfg, manifest):
        from .hrnet_import import import_pose

        return import_pose(self, path, model_cfg, manifest)

    def keep_width_modules(self, model):
        return [model.final_layer]  # one heatmap per keypoint

    def int8_float_modules(self, model):
        return [model.final_layer]  # the heatmaps' peaks and their quarter-pixel comparisons need float


TASK = PoseTask()
