"""Deployment: ONNX export verified in ONNX Runtime, INT8 static quantization, latency.

`onnx_export` writes the graph and checks parity against PyTorch, `quantize` makes the INT8 QDQ
model, `sensitivity` picks the layers it keeps float by their output error, `runtime` wraps an ORT session as a model the family's evaluate can call (one COCOeval
path for PyTorch and ORT), `latency` times ORT and PyTorch at batch 1, `analysis` shows which
kernels ORT runs and where the time goes, and `steps` are the pipeline steps built from them.
"""
from .analysis import kernel_counts, op_profile
from .latency import LATENCY_KEYS, latency_stats, ort_latency, time_calls, torch_latency
from .onnx_export import check_parity, export_onnx, max_abs_diff
from .quantize import CALIBRATIONS, BatchReader, downstream_nodes, fuse_silu, quantize_int8, space_to_depth_stem, weighted_layers
from .runtime import OrtModel, make_session, read_metadata, session_options
from .sensitivity import output_error, run_outputs, select_float_layers
from .steps import evaluate_onnx_stage, export_stage, quantize_stage, torch_latency_stage

__all__ = ["export_onnx", "check_parity", "max_abs_diff", "quantize_int8", "fuse_silu", "space_to_depth_stem", "downstream_nodes",
           "weighted_layers", "CALIBRATIONS", "output_error", "run_outputs", "select_float_layers", "BatchReader", "OrtModel", "make_session", "session_options", "read_metadata", "ort_latency",
           "torch_latency", "latency_stats", "time_calls", "LATENCY_KEYS", "kernel_counts", "op_profile",
           "export_stage", "quantize_stage", "evaluate_onnx_stage", "torch_latency_stage"]
