"""Deployment: ONNX export verified in ONNX Runtime, INT8 static quantization, latency.

`onnx_export` writes the graph and checks parity against PyTorch, `quantize` makes the INT8 QDQ
model, `sensitivity` picks the layers it keeps float by their output error, `runtime` wraps an ORT session as a model the family's evaluate can call (one COCOeval
path for PyTorch and ORT), `geometry` names the deployment geometries (input size, threads, batch) a model is
timed at, `latency` times ORT and PyTorch, `analysis` shows which kernels ORT runs and where the time goes,
`denormals` zeroes tiny weights before parity and finds denormal arithmetic at latency time, and
`settings` names the export keys each step reads (the
pipeline's deployment steps are `pipeline_lib.steps.export`). The names below are imported on first use (PEP 562), so the
workflow reads `export.settings` without loading torch and ONNX Runtime.
"""
from ..lazy import lazy_exports

_WHERE = {
    "analysis": ("kernel_counts", "op_profile"),
    "denormals": ("denormal_check", "denormal_warning", "subnormal_count", "zero_tiny_weights"),
    "geometry": ("geometries", "geometry_label", "target_geometry"),
    "latency": ("LATENCY_KEYS", "latency_stats", "ort_geometry_latency", "ort_latency", "time_calls", "torch_latency"),
    "onnx_export": ("check_parity", "export_onnx", "max_abs_diff"),
    "quantize": ("CALIBRATIONS", "BatchReader", "downstream_nodes", "fuse_silu", "quantize_int8", "space_to_depth_stem",
                 "weighted_layers"),
    "runtime": ("OrtModel", "LoadedOnnx", "load_onnx", "make_session", "read_metadata", "session_options"),
    "sensitivity": ("output_error", "run_outputs", "select_float_layers"),
}
__getattr__, __all__ = lazy_exports(__name__, _WHERE)
