"""ONNX Runtime sessions, and an ORT model that a family's `Task.evaluate` calls like the torch one.

    loaded = load_onnx("results/export/pruned_finetuned.int8.onnx", threads=2)   # as tasks.load_model for .pt
    model = loaded.model   # an OrtModel
    metrics = task.evaluate(model, val_loader, torch.device("cpu"), eval_cfg, manifest)  # same COCOeval path

Every session in slimflow (parity, evaluation, latency, profiling) is made by `make_session`, so
what is measured is what is evaluated: CPU provider, all graph optimizations, sequential
execution and a fixed number of intra-op threads.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from torch import nn

from ..errors import UserError
from ..inputs import ort_feed
from ..tasks import ImageSize, Task, get_task

__all__ = ["session_options", "make_session", "read_metadata", "OrtModel", "LoadedOnnx", "load_onnx"]


def session_options(threads: int, *, profile_prefix: str | None = None,
                    optimized_path: str | os.PathLike | None = None) -> ort.SessionOptions:
    """CPU session options: ORT_ENABLE_ALL, sequential, `threads` intra-op threads, one inter-op thread."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: ORT's warnings about saving NCHWc graphs are expected here
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


def make_session(model: str | os.PathLike | bytes, threads: int = 1, **options) -> ort.InferenceSession:
    """An ORT CPU session for an .onnx path (or serialized bytes); a broken file is a UserError naming it."""
    source = model if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise UserError(f"{model}: ONNX model not found")
    try:
        return ort.InferenceSession(source, session_options(threads, **options), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph types
        where = "<bytes>" if isinstance(model, bytes) else model
        raise UserError(f"{where}: ONNX Runtime cannot load the model ({str(e).splitlines()[0][:200]})") from None


def read_metadata(path: str | os.PathLike) -> dict:
    """slimflow's keys from an exported model's metadata_props (JSON-decoded), e.g. {"imgsz": 128, ...}."""
    try:
        props = onnx.load(str(path), load_external_data=False).metadata_props
    except Exception as e:
        raise UserError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    return {p.key.removeprefix("slimflow."): json.loads(p.value) for p in props if p.key.startswith("slimflow.")}


class OrtModel(nn.Module):
    """An ONNX Runtime session behind the torch model interface that `Task.evaluate` uses.

    forward(*inputs) runs the session on the inputs (moved to CPU; float32, integers as int64) and
    returns torch tensors: one tensor for a single-output model, a tuple otherwise.
    eval()/train()/to() change nothing: the graph is frozen in eval mode and runs on ORT's CPU
    provider. `metadata` is slimflow's from the file (`read_metadata`).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        super().__init__()
        self.path = Path(path)
        self.session = make_session(path, threads)

    @cached_property
    def metadata(self) -> dict:  # read only by a family that needs it (diffusion's noise schedule)
        return read_metadata(self.path)

    def forward(self, *inputs: torch.Tensor):
        outs = [torch.from_numpy(o) for o in self.session.run(None, ort_feed(self.session, inputs))]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def train(self, mode: bool = True) -> "OrtModel":
        return self  # an exported graph has no training mode

    def to(self, *args, **kwargs) -> "OrtModel":
        return self  # inputs are moved to CPU in forward


@dataclass
class LoadedOnnx:
    """An exported model as the steps use it: its metadata, its family's Task, its input size, and
    (made on first use) an ORT session behind the model interface."""

    path: Path
    meta: dict  # read_metadata: family, stage, imgsz, names, precision, heads, ...
    task: Task
    imgsz: ImageSize
    threads: int = 1

    @cached_property
    def model(self) -> OrtModel:
        return OrtModel(self.path, self.threads)


def load_onnx(path: str | os.PathLike, threads: int = 1) -> LoadedOnnx:
    """An exported model's metadata → Task → input size (UserError naming a file slimflow did not export)."""
    meta = read_metadata(path)
    if "family" not in meta:
        raise UserError(f"{path}: not exported by slimflow (no slimflow.family metadata)")
    return LoadedOnnx(Path(path), meta, get_task(meta["family"]), meta["imgsz"], threads)
