"""The person re-identification family (reid-strong-baseline) behind slimflow's Task interface.

    task = ReIDTask(); manifest = task.prepare_dataset(cfg["dataset"], Path("results/data"), seed=0)
    model = task.build_model(task.arch(cfg["model"], manifest))
    loader = task.loader(manifest, "val", train=False, imgsz=[256, 128], batch_size=64, workers=0, seed=0)
    metrics = task.evaluate(model, loader, torch.device("cpu"), {}, manifest)   # mAP, rank1, rank5, rank10

The "val" split is the query set followed by the gallery; `imgsz` is an int (square) or [h, w].
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ...contracts import input_size
from ...engine.utils import make_loader
from ...errors import UserError
from ...io import read_json, write_json
from ..base import Task
from .data import ReIDDataset
from .market import index_market
from .evaluate import distance_matrix, market1501_metrics
from .loss import ReIDLoss, distill_loss
from .model import ARCHS, ReIDNet
from .sampler import PKSampler
from .synthetic import generate_market

__all__ = ["ReIDTask", "TASK"]


class _Criterion:
    """(model, batch) -> (loss, items): the engine's view of the ReID losses."""

    def __init__(self, model: nn.Module, hyp: dict):
        self.loss = ReIDLoss(model.classifier.out_features, model.classifier.in_features, hyp)

    def __call__(self, model: nn.Module, batch: dict):
        logits, feat = model(batch["images"])
        return self.loss.to(feat.device)(logits, feat, batch["labels"])

    def state_dict(self) -> dict:  # the centre loss's class centres: resumed with the training
        return self.loss.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loss.load_state_dict(state)


class ReIDTask(Task):
    family = "reid"
    metric_keys = ("mAP", "rank1", "rank5", "rank10")
    output_names = ("embeddings",)  # (B, D) retrieval features; rank a gallery by their distance

    def prepare_dataset(self, dataset_cfg: dict, out_dir: Path, seed: int) -> dict:
        root = dataset_cfg["path"]
        if root is None:
            syn = dataset_cfg["synthetic"]
            # The shared synthetic keys read as identities for ReID; imgsz is the crop height (width = height/2).
            root = generate_market(out_dir / "market", n_train_ids=syn["n_train"], n_test_ids=syn["n_val"],
                                   height=syn["imgsz"], seed=seed, difficulty=syn["difficulty"])
        index = index_market(root)
        return {"task": self.family, **index}

    def arch(self, model_cfg: dict, manifest: dict) -> dict:
        name = model_cfg["name"]
        if name not in ARCHS:
            raise UserError(f"model.name: {name!r} is not a ReID backbone with task: reid (use {', '.join(ARCHS)})")
        kwargs = {"num_classes": manifest["nc"], "name": name, "last_stride": model_cfg["last_stride"],
                  "neck_feat": model_cfg["neck_feat"]}
        return {"family": self.family, "name": name, "kwargs": kwargs}

    def build_model(self, arch: dict) -> nn.Module:
        return ReIDNet(**arch["kwargs"])

    def loader(self, manifest, split, *, train, imgsz, batch_size, workers, seed, augment=None) -> DataLoader:
        size = input_size(imgsz)
        if split == "val":  # the query set, then the gallery; evaluate tells them apart by the flag
            items = [{**q, "query": True} for q in manifest["splits"]["query"]] + manifest["splits"]["gallery"]
        else:
            items = manifest["splits"][split]
        if not train:
            return make_loader(ReIDDataset(items, size, seed=seed), batch_size=batch_size, shuffle=False,
                               workers=workers, seed=seed)
        augment = augment or {}
        k = augment.get("instances", 4)
        if batch_size % k:
            raise UserError(f"train.batch_size: {batch_size} must be a multiple of train.augment.instances ({k}): "
                            "a batch is P identities x K images")
        ids = len({it["label"] for it in items})
        if batch_size // k > ids:
            raise UserError(f"train.batch_size: {batch_size} / {k} = {batch_size // k} identities per batch, but the "
                            f"{split} split has only {ids}; lower train.batch_size")
        shard = dist.is_initialized()  # DDP: batch_size is this rank's share; ranks take turns in one batch sequence
        sampler = PKSampler([it["label"] for it in items], p=batch_size // k, k=k, seed=seed,
                            num_replicas=dist.get_world_size() if shard else 1, rank=dist.get_rank() if shard else 0)
        dataset = ReIDDataset(items, size, augment, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                          generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available())

    def criterion(self, model, train_cfg):
        return _Criterion(model, train_cfg["loss"])

    def distill_loss(self, student_out, teacher_out, cfg):
        return distill_loss(student_out, teacher_out, cfg["temperature"])

    def image_loader(self, paths, *, imgsz, batch_size):
        # The val split's preprocessing (resize, normalize) on crops without identity or camera.
        items = [{"image": str(path), "pid": -1, "camid": -1} for path in paths]
        return make_loader(ReIDDataset(items, input_size(imgsz)), batch_size=batch_size, shuffle=False, workers=0,
                           seed=0)

    @staticmethod
    def _embed(model, batch, device) -> torch.Tensor:
        return model(batch["images"].to(device)).float().cpu()  # (B, D) embeddings

    @torch.no_grad()
    def predict(self, model, batch, device, eval_cfg):
        """Per image: {"embedding": [D floats]}; rank a gallery by their Euclidean distance."""
        return [{"embedding": [round(v, 6) for v in row]} for row in self._embed(model, batch, device).tolist()]

    @torch.no_grad()
    def evaluate(self, model, loader, device, eval_cfg, manifest, predictions_path=None):
        model.eval()
        feats, pids, camids, is_query, index = [], [], [], [], []
        for batch in loader:
            feats.append(self._embed(model, batch, device))
            pids.append(batch["pids"]), camids.append(batch["camids"])
            is_query.append(batch["query"]), index.append(batch["index"])
        feats, pids, camids = torch.cat(feats), torch.cat(pids).numpy(), torch.cat(camids).numpy()
        q, index = torch.cat(is_query).numpy().astype(bool), torch.cat(index).numpy()
        dist = distance_matrix(feats[q], feats[~q])
        metrics, per_query = market1501_metrics(dist.numpy(), pids[q], pids[~q], camids[q], camids[~q])
        if predictions_path is not None:
            items = loader.dataset.items
            q_items, g_items = [items[i] for i in index[q]], [items[i] for i in index[~q]]
            write_json(predictions_path, [
                {"query": Path(qi["image"]).name, "ap": r["ap"],
                 "ranked": [{"image": Path(g_items[j]["image"]).name, "distance": round(float(dist[n, j]), 5)}
                            for j in r["ranked"]]}
                for n, (qi, r) in enumerate(zip(q_items, per_query))])
        return metrics

    def report_samples(self, manifest, predictions_path, n):
        """The first n scored queries with their ranked gallery (evaluate's predictions), matches marked."""
        queries = {Path(it["image"]).name: it for it in manifest["splits"]["query"]}
        gallery = {Path(it["image"]).name: it for it in manifest["splits"]["gallery"]}
        samples = []
        for entry in read_json(predictions_path):
            query = queries[entry["query"]]
            if entry["ap"] is not None and len(samples) < n:
                ranked = [{"image": gallery[g["image"]]["image"], "distance": g["distance"],
                           "match": gallery[g["image"]]["pid"] == query["pid"]} for g in entry["ranked"]]
                samples.append((Path(query["image"]), {"ap": entry["ap"], "ranked": ranked}))
        return samples

    def draw(self, image_path, prediction, names, out_path):
        """A query's ranked gallery strip (a `report_samples` prediction); an embedding alone draws nothing."""
        if not (isinstance(prediction, dict) and "ranked" in prediction):
            return False
        from .draw import draw_ranked
        draw_ranked(Path(image_path), prediction["ranked"], Path(out_path))
        return True

    def fitness(self, metrics):
        return metrics["mAP"]

    def import_weights(self, path, model_cfg, manifest):
        from .weights_import import import_reid

        return import_reid(self, path, model_cfg, manifest)

    def keep_width_modules(self, model):
        # The classifier keeps one output per training identity, and the embedding keeps its
        # width: it is the deployed model's output (gallery indexes store vectors of that size).
        # The embedding's channels are the last block's outputs (neck_feat: before) and the
        # BNNeck's (after), one coupled group; naming both holds it in either mode, since the
        # eval-mode trace the pruner uses skips the neck with `before` and the classifier always.
        # layer4's cost still falls through the inner channels of its blocks.
        last = model.backbone.layer4[-1]
        return [model.classifier, model.bnneck, last.bn3 if hasattr(last, "bn3") else last.bn2]

    def residual_blocks(self, model):
        # torchvision blocks end in relu(x + f(x)), and x is itself a ReLU's output: without f the
        # block is the identity. A block with a downsample changes shape; the last block holds
        # the embedding's BN (keep_width_modules).
        # An already dropped block is an nn.Identity: no block.
        trunk = model.backbone
        return [f"backbone.{layer}.{i}" for layer in ("layer1", "layer2", "layer3", "layer4")
                for i, block in enumerate(getattr(trunk, layer))
                if getattr(block, "downsample", True) is None and block is not trunk.layer4[-1]]

    def int8_float_modules(self, model):
        # The embedding is the product: its last block and the BNNeck stay float so gallery
        # distances keep their resolution.
        return self.keep_width_modules(model)


TASK = ReIDTask()
