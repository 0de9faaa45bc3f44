"""A network's inputs: one tensor (images) or a tuple, one per `Task.input_names`.

    inputs = task.example_input(imgsz)          # torch.rand(1, 3, 128, 128), or (x_t, t, label) for diffusion
    model(*as_tuple(inputs))                    # how every step calls a model on them
    session.run(None, ort_feed(session, inputs))

Most families read one image tensor; the diffusion denoiser reads (x_t, t, label). Export,
parity, FLOPs, latency, pruning's dependency graph and INT8 calibration take either form
through these helpers, so they name no family.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
import torch

if TYPE_CHECKING:  # a name in an annotation: importing ONNX Runtime costs a job that runs none ~0.3 s
    import onnxruntime as ort

__all__ = ["Inputs", "as_tuple", "batch_size", "first_rows", "numpy_inputs", "ort_feed", "concat_batches"]

Inputs = Union[torch.Tensor, tuple[torch.Tensor, ...]]


def as_tuple(inputs) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def batch_size(inputs) -> int:
    return int(as_tuple(inputs)[0].shape[0])


def first_rows(inputs: Inputs, n: int) -> Inputs:
    """The first `n` items of every input, in the form given."""
    rows = tuple(x[:n] for x in as_tuple(inputs))
    return rows if isinstance(inputs, (tuple, list)) else rows[0]


def numpy_inputs(inputs) -> tuple[np.ndarray, ...]:
    """Contiguous numpy arrays as ONNX Runtime wants them: float32 for floats, int64 for integers."""
    arrays = []
    for x in as_tuple(inputs):
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        arrays.append(np.ascontiguousarray(x, dtype=np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32))
    return tuple(arrays)


def ort_feed(session: ort.InferenceSession | Sequence[str], inputs) -> dict[str, np.ndarray]:
    """{input name: array} for a session (or its input names), inputs in the graph's order."""
    names = [i.name for i in session.get_inputs()] if hasattr(session, "get_inputs") else list(session)
    arrays = numpy_inputs(inputs)
    if len(arrays) != len(names):
        raise ValueError(f"the model reads {len(names)} input(s) {names}, given {len(arrays)}")
    return dict(zip(names, arrays))


def concat_batches(batches: Sequence) -> tuple[np.ndarray, ...]:
    """Batches (each one input or a tuple of inputs) joined along the batch axis, input by input."""
    columns = zip(*(numpy_inputs(b) for b in batches))
    return tuple(np.concatenate(column) for column in columns)
