"""The detection family behind slimflow's Task interface.

    task = DetectionTask(); manifest = task.prepare_dataset(cfg["dataset"], Path("results/data"), seed=0)

The data pipeline, the loss and the evaluation (torchvision, with the torch._dynamo it imports,
~1.5 s; pycocotools) are imported by the methods that use them: the jobs that only index the
dataset or time the network load neither.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ...engine.utils import make_loader
from ...io import read_json, write_json
from ..base import Task
from .anchors import fit_anchors
from .model import ANCHORS, Bottleneck, YOLODetector, postprocess
from .synthetic import generate_synthetic
from .yolo_format import coco_ground_truth, image_size, index_yolo_dataset

__all__ = ["DetectionTask", "TASK"]


class _Criterion:
    """(model, batch) -> (loss, items): the engine's view of the YOLOv5 loss."""

    def __init__(self, model: nn.Module, hyp: dict):
        from .loss import DetectionLoss

        self.loss = DetectionLoss(model, hyp)

    def __call__(self, model: nn.Module, batch: dict):
        return self.loss(model(batch["images"]), batch["targets"])


class DetectionTask(Task):
    family = "detection"
    metric_keys = ("mAP50_95", "mAP50", "precision", "recall")
    output_names = ("detections",)  # (B, N, 5 + nc): decoded xyxy boxes, objectness, class scores; NMS left to the user
    loss_sums_over_batch = True  # YOLOv5's loss x batch size
    dynamic_input = 32  # the largest stride: the decode's grids follow the feature maps' H and W
    deploy_sizes = (640,)  # where YOLOv5 users deploy, whatever size it was trained at

    def prepare_dataset(self, dataset_cfg: dict, out_dir: Path, seed: int) -> dict:
        data_yaml = dataset_cfg["path"]
        if data_yaml is None:
            syn = dataset_cfg["synthetic"]
            data_yaml = generate_synthetic(out_dir / "synthetic", n_train=syn["n_train"], n_val=syn["n_val"],
                                           imgsz=syn["imgsz"], seed=seed, difficulty=syn["difficulty"])
        index = index_yolo_dataset(data_yaml)
        gt_paths = {}
        for split, items in index["splits"].items():
            gt_paths[split] = str(out_dir / f"{split}_coco.json")
            write_json(gt_paths[split], coco_ground_truth(items, index["names"]))
        counts = {split: {"images": len(items), "boxes": sum(len(it["boxes"]) for it in items)}
                  for split, items in index["splits"].items()}
        return {"task": self.family, "data_yaml": str(data_yaml), "names": index["names"], "nc": index["nc"],
                "counts": counts, "checksums": index["checksums"], "coco_gt": gt_paths, "splits": index["splits"]}

    def arch(self, model_cfg: dict, manifest: dict) -> dict:
        name, anchors = model_cfg["name"], model_cfg["anchors"]
        if anchors == "auto":
            anchors = fit_anchors(manifest["splits"]["train"], model_cfg["imgsz"])
        if anchors in (None, "coco"):
            anchors = ANCHORS
        kwargs = {"nc": manifest["nc"], "scale": name.removeprefix("yolov5"), "anchors": anchors,
                  "shortcut": model_cfg["shortcut"], "act": model_cfg["act"]}
        return {"family": self.family, "name": name, "kwargs": kwargs}

    def build_model(self, arch: dict) -> nn.Module:
        return YOLODetector(**arch["kwargs"])

    def loader(self, manifest, split, *, train, imgsz, batch_size, workers, seed, augment=None):
        from .data import YoloDataset, collate

        items = manifest["splits"][split]
        dataset = YoloDataset(items, imgsz, augment if train else None, seed=seed)
        return make_loader(dataset, batch_size=batch_size, shuffle=train, workers=workers, seed=seed,
                           collate_fn=collate, drop_last=train and len(items) > batch_size)

    def image_loader(self, paths, *, imgsz, batch_size):
        # The val split's letterbox: the same dataset class without labels.
        from .data import YoloDataset, collate

        items = []
        for i, path in enumerate(paths):
            width, height = image_size(Path(path))  # EXIF-upright, as the loader reads it
            items.append({"image": str(path), "width": width, "height": height, "boxes": [], "image_id": i})
        return make_loader(YoloDataset(items, imgsz), batch_size=batch_size, shuffle=False, workers=0, seed=0,
                           collate_fn=collate)

    def criterion(self, model, train_cfg):
        return _Criterion(model, train_cfg["loss"])

    def distill_loss(self, student_out, teacher_out, cfg):
        from .loss import distill_loss

        return distill_loss(student_out, teacher_out, cfg["temperature"])

    @torch.no_grad()
    def predict(self, model, batch, device, eval_cfg):
        """Per image: [{"category_id", "score", "bbox": [x, y, w, h]}] in original pixels, after NMS."""
        from torchvision.ops import box_convert

        from .data import scale_boxes_to_original

        decoded = model(batch["images"].to(device))  # (B, N, 5+nc)
        outputs = postprocess(decoded, eval_cfg["conf_thres"], eval_cfg["iou_thres"], eval_cfg["max_det"])
        predictions = []
        for out, ratio_pad, size in zip(outputs, batch["ratio_pad"], batch["orig_sizes"]):
            out = out.cpu()
            xywh = box_convert(scale_boxes_to_original(out[:, :4], ratio_pad, size), "xyxy", "xywh")
            predictions.append([{"category_id": int(c), "score": round(float(s), 5),
                                 "bbox": [round(float(v), 2) for v in box]}
                                for box, s, c in zip(xywh, out[:, 4], out[:, 5])])
        return predictions

    @torch.no_grad()
    def evaluate(self, model, loader, device, eval_cfg, manifest, predictions_path=None):
        from .evaluate import coco_detection_metrics

        model.eval()
        detections = []
        for batch in loader:
            for image_id, found in zip(batch["image_ids"], self.predict(model, batch, device, eval_cfg)):
                detections += [{"image_id": int(image_id), **d} for d in found]
        if predictions_path is not None:
            write_json(predictions_path, detections)
        return coco_detection_metrics(read_json(manifest["coco_gt"]["val"]), detections)

    def draw(self, image_path, prediction, names, out_path, min_score=0.25):
        """Boxes with class name and score on a filled label (those scoring at least `min_score`;
        ground truth, without scores, all), a legend when many classes show (draw.draw_boxes)."""
        from .draw import draw_boxes

        draw_boxes(Path(image_path), prediction, names, Path(out_path), min_score)
        return True

    def import_weights(self, path, model_cfg, manifest):
        from .yolov5_import import import_detection  # YOLOv5 checkpoints and slimflow ones

        return import_detection(self, path, model_cfg, manifest)

    def fitness(self, metrics):
        return 0.1 * metrics["mAP50"] + 0.9 * metrics["mAP50_95"]

    def keep_width_modules(self, model):
        return model.keep_width_modules()

    def residual_blocks(self, model):
        # The backbone's bottlenecks with a shortcut; the head's C3 blocks have none.
        return [name for name, m in model.named_modules() if isinstance(m, Bottleneck) and m.add]

    def int8_float_modules(self, model):
        # The heads' outputs feed the box decode (exp, grid offsets, anchor scaling): INT8 there
        # would quantize pixel coordinates, so heads and decode stay float.
        return model.keep_width_modules()

    def report_samples(self, manifest, predictions_path, n):
        """The first n val images with their detections (evaluate's COCO results, grouped per image)."""
        found = {}
        for det in read_json(predictions_path):
            found.setdefault(det["image_id"], []).append(det)
        return [(Path(item["image"]), found.get(item["image_id"], [])) for item in manifest["splits"]["val"][:n]]

    def report_truth(self, manifest, n):
        """The labelled boxes of the first n val images (report_samples' images), as `draw` takes them
        (none when the manifest's items carry no boxes)."""
        items = manifest["splits"]["val"][:n]
        if not all({"boxes", "width", "height"} <= set(it) for it in items):
            return []
        return [[{"category_id": int(c), "bbox": [(cx - w / 2) * it["width"], (cy - h / 2) * it["height"],
                                                  w * it["width"], h * it["height"]]}
                 for c, cx, cy, w, h in it["boxes"]] for it in items]

    def report_figures(self, manifest, predictions, out_dir):
        """PR curves at IoU 0.5 and per-class AP of each stage, from COCOeval's precision array."""
        from .report import write_figures  # matplotlib only where the report runs
        return write_figures(read_json(manifest["coco_gt"]["val"]),
                             {stage: read_json(path) for stage, path in predictions.items()}, manifest["names"],
                             Path(out_dir))


TASK = DetectionTask()
