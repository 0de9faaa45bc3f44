"""The deployment steps, one function each, with plain arguments (paths and the config's `export` section).

    export_stage(checkpoint="results/pruned_finetuned.pt", manifest_path="results/data/dataset.json",
                 export_cfg=cfg["export"], out_onnx="results/export/pruned_finetuned.onnx",
                 out_report="results/export/pruned_finetuned.json")
    quantize_stage(onnx_path="results/export/pruned_finetuned.onnx", report_path="results/export/pruned_finetuned.json",
                   manifest_path=..., export_cfg=...,
                   out_onnx="results/export/pruned_finetuned.int8.onnx", out_report="results/export/pruned_finetuned.int8.json")
    evaluate_onnx_stage(onnx_path="results/export/pruned_finetuned.int8.onnx",
                        report_path="results/export/pruned_finetuned.int8.json", ..., out_metrics="results/metrics/onnx_int8.json")

Every exported model carries its own description (family, stage, imgsz, heads) in ONNX metadata,
and a JSON report beside it (`<model>.json`: parity, params, FLOPs, quantization settings), so
later steps need nothing but the .onnx, its report and the dataset manifest. PyTorch's own latency,
which needs neither ONNX nor ONNX Runtime, is `steps.latency`.
"""
from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Callable

import onnxruntime as ort
import torch

from .. import __version__
from ..export.analysis import kernel_counts
from ..export.denormals import denormal_check, denormal_warning, zero_tiny_weights
from ..export.geometry import geometries
from ..export.latency import LATENCY_KEYS, ort_geometry_latency
from ..export.onnx_export import check_parity, export_onnx
from ..export.quantize import quantize_int8
from ..export.runtime import LoadedOnnx, load_onnx
from ..export.sensitivity import output_error, run_outputs, select_float_layers
from ..inputs import as_tuple, concat_batches, numpy_inputs
from ..io import atomic_path, read_json, sha256_file, write_json
from ..profile import count_flops, count_params
from ..tasks import Task, load_model, with_evaluator
from .latency import random_input
from .records import metrics_record

__all__ = ["export_stage", "quantize_stage", "int8_probe_export", "calibration_batches", "evaluate_onnx_stage"]

log = logging.getLogger("slimflow")

def _input_shapes(task: Task, example) -> dict:
    """The report's input shapes: "batch" for the dynamic batch, "height"/"width" where those are dynamic."""
    shapes = {name: ["batch", *x.shape[1:]] for name, x in zip(task.input_names, as_tuple(example))}
    if task.dynamic_input:
        first = task.input_names[0]
        shapes[first] = [*shapes[first][:2], "height", "width"]
    return shapes


def _size_parity_inputs(task: Task, imgsz, seed: int) -> dict:
    """For a graph with dynamic height and width: a random input at each of the family's deployment sizes."""
    sizes = [s for s in task.deploy_sizes if s != imgsz] if task.dynamic_input else []
    return {f"random {s} px": random_input(task, s, 1, seed + 2) for s in sizes}


def export_stage(*, checkpoint: str | os.PathLike, manifest_path: str | os.PathLike, export_cfg: dict,
                 out_onnx: str | os.PathLike, out_report: str | os.PathLike, seed: int = 0) -> dict:
    """Export a checkpoint to ONNX, verify it in ONNX Runtime against PyTorch, write the model and its report.

    Parity inputs: random inputs at batch 1 and 3 (the batch is dynamic) and the first val batch.
    A difference beyond `parity_tol` + `parity_rtol`·|output| is a UserError and writes nothing.
    """
    loaded = load_model(checkpoint)
    ckpt, task, model, imgsz = loaded.ckpt, loaded.task, loaded.model, loaded.imgsz
    manifest = read_json(manifest_path)
    example = task.example_input(imgsz)
    heads = int8_heads(task, model)
    outputs = list(task.output_names)
    metadata = {"family": task.family, "arch": ckpt["arch"]["name"], "kwargs": ckpt["arch"]["kwargs"],
                "stage": ckpt["meta"].get("stage"),
                "imgsz": imgsz, "dynamic_input": task.dynamic_input, "names": ckpt["meta"].get("names"),
                "precision": "fp32", "heads": heads,
                "checkpoint_sha256": sha256_file(checkpoint), "slimflow": __version__}
    val = task.loader(manifest, "val", train=False, imgsz=imgsz, batch_size=8, workers=0, seed=seed)
    inputs = {"random batch 1": random_input(task, imgsz, 1, seed),
              "random batch 3": random_input(task, imgsz, 3, seed + 1),
              "val images": task.model_inputs(next(iter(val)), torch.Generator().manual_seed(seed)),
              **_size_parity_inputs(task, imgsz, seed)}
    with atomic_path(out_onnx) as tmp:  # a model that fails parity is never published
        export_onnx(model, example, tmp, opset=export_cfg["opset"], input_names=task.input_names, output_names=outputs,
                    metadata=metadata, dynamic=task.dynamic_input)
        denormals = zero_tiny_weights(tmp)  # before parity: the published weights are the checked ones
        parity = check_parity(model, tmp, inputs, export_cfg["parity_tol"], export_cfg["parity_rtol"])
    report = {"checkpoint": str(checkpoint), "onnx": str(out_onnx), "opset": export_cfg["opset"],
              "inputs": _input_shapes(task, example),
              "outputs": outputs, **metadata,
              "params": count_params(model), "flops": count_flops(model, example),
              "file_bytes": os.path.getsize(out_onnx), "parity": parity, "denormal_weights": denormals,
              "onnxruntime": ort.__version__,
              "torch": torch.__version__}
    write_json(out_report, report)
    log.info("exported %s -> %s (opset %d); ORT parity max abs diff %.3g (tolerance %g + %g·|output|); %d tiny "
             "weights zeroed", checkpoint, out_onnx, export_cfg["opset"], parity["max_abs_diff"], parity["tolerance"],
             parity["rtol"], denormals["zeroed"])
    return report


def int8_heads(task: Task, model: torch.nn.Module) -> list[str]:
    """The weights of the modules the family keeps float in INT8 (its heads): the FP32 model's metadata "heads"."""
    module_names = {m: name for name, m in model.named_modules()}
    return [f"{module_names[m]}.weight" for m in task.int8_float_modules(model)]


def int8_probe_export(loaded, manifest_path: str | os.PathLike, export_cfg: dict,
                      seed: int = 0) -> Callable[[torch.nn.Module, Path], Path]:
    """How a prune-target probe becomes the INT8 model this chain's quantize step would write from
    it: exported as export_stage exports (dynamic input at the trained size, tiny weights zeroed),
    quantized by `quantize_int8` with the `export` section's settings on the same calibration
    images (read once, for every probe). `int8_float_layers: auto` (one quantization per layer) is
    not run per probe: a probe keeps only the fixed rules' layers float."""
    task, imgsz = loaded.task, loaded.imgsz
    batches = calibration_batches(task, read_json(manifest_path), imgsz, export_cfg["calibration_images"], seed)
    settings = _quantize_settings({"heads": int8_heads(task, loaded.model)}, export_cfg)
    float_layers = [] if export_cfg["int8_float_layers"] == "auto" else export_cfg["int8_float_layers"]

    def export(model: torch.nn.Module, folder: Path) -> Path:
        fp32, int8 = folder / "probe.onnx", folder / "probe.int8.onnx"
        export_onnx(model, task.example_input(imgsz), fp32, input_names=task.input_names,
                    output_names=list(task.output_names), dynamic=task.dynamic_input)
        zero_tiny_weights(fp32)
        quantize_int8(fp32, int8, batches, float_layers=float_layers, **settings)
        return int8
    return export


def calibration_batches(task: Task, manifest: dict, imgsz, n: int, seed: int) -> list:
    """`n` training images spread evenly over the split's items, preprocessed as for evaluation, one per batch.

    Batch 1 keeps every calibration batch the same shape, which the histogram calibrators need.
    """
    items = manifest["splits"]["train"]
    step = max(len(items) // n, 1)
    subset = {**manifest, "splits": {**manifest["splits"], "train": items[::step][:n]}}
    loader = task.loader(subset, "train", train=False, imgsz=imgsz, batch_size=1, workers=0, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    # islice: a split whose items are files of many images (diffusion's IDX) gives its first n
    return [numpy_inputs(task.model_inputs(batch, generator)) for batch in itertools.islice(loader, n)]


def _quantize_settings(meta: dict, export_cfg: dict) -> dict:
    """quantize_int8's settings from the `export` section and the FP32 model's metadata."""
    method = export_cfg["int8_calibration"]
    return {"per_channel": True, "keep_float_after": meta["heads"], "float_heads": True,
            "stem": export_cfg["int8_stem"], "silu": export_cfg["int8_silu"], "calibrate_method": method,
            "percentile": export_cfg["int8_percentile"] if method == "percentile" else None}


def quantize_stage(*, onnx_path: str | os.PathLike, report_path: str | os.PathLike, manifest_path: str | os.PathLike,
                   export_cfg: dict, out_onnx: str | os.PathLike, out_report: str | os.PathLike, seed: int = 0) -> dict:
    """INT8 static quantization (QDQ, per-channel weights) calibrated on training images; write model and report.

    Kept float: the convolution reading the image (3 input channels fit no int8 kernel) unless it
    can be rewritten with SpaceToDepth (`export_cfg["int8_stem"]`), the prediction heads and
    everything after them (the decode), SiLU when `export_cfg["int8_silu"]` is "float", and the
    layers of `int8_float_layers` ("auto": the most sensitive ones, within `int8_max_error`; see
    `export.sensitivity`). See `export.quantize` for why. The report records the calibration
    method, the output error against FP32 on the calibration images and, for "auto", the per-layer table.
    """
    loaded = load_onnx(onnx_path)
    meta, imgsz = loaded.meta, loaded.imgsz
    batches = calibration_batches(loaded.task, read_json(manifest_path), imgsz, export_cfg["calibration_images"], seed)
    settings = _quantize_settings(meta, export_cfg)
    float_layers, selection = export_cfg["int8_float_layers"], None
    if float_layers == "auto":
        selection = select_float_layers(onnx_path, batches, max_error=export_cfg["int8_max_error"], **settings)
        float_layers = selection["float_layers"]
    calibration = {"int8_calibration": settings["calibrate_method"], "int8_percentile": settings["percentile"],
                   "int8_float_layers": float_layers}
    quantization = quantize_int8(onnx_path, out_onnx, batches, float_layers=float_layers, **settings,
                                 metadata={"precision": "int8", **calibration})
    images = concat_batches(batches)
    quantization["output_error"] = output_error(run_outputs(onnx_path, images), run_outputs(out_onnx, images))
    fp32 = read_json(report_path)
    kernels = kernel_counts(out_onnx)
    report = {"onnx": str(out_onnx), "source": str(onnx_path), **{k: fp32[k] for k in ("checkpoint", "params", "flops")},
              **meta, "precision": "int8", **calibration, "file_bytes": os.path.getsize(out_onnx),
              "quantization": quantization, "float_layer_selection": selection, "ort_kernels": kernels,
              "onnxruntime": ort.__version__}
    write_json(out_report, report)
    integer = {k: v for k, v in kernels.items() if k.startswith("QLinear")}
    log.info("quantized %s -> %s on %d images (%s calibration, float layers %s; output error %.4g against FP32); "
             "ORT runs %s as integer kernels; float kernels: %s", onnx_path, out_onnx,
             quantization["calibration_images"], settings["calibrate_method"], float_layers,
             quantization["output_error"], integer, {k: v for k, v in kernels.items() if k not in integer})
    return report


def _deploy_latency(loaded: LoadedOnnx, export_cfg: dict, seed: int) -> list[dict]:
    """The model's ORT latency at every geometry of `export.deploy` (export.geometry), the reference first."""
    dynamic = loaded.meta.get("dynamic_input", 0)  # a model exported before the key has a fixed graph
    found = geometries(export_cfg["deploy"], trained=loaded.imgsz, extra_sizes=loaded.task.deploy_sizes,
                       dynamic=dynamic, threads=export_cfg["threads"])
    examples = [(g, random_input(loaded.task, g["imgsz"], g["batch"], seed)) for g in found]
    return ort_geometry_latency(loaded.path, examples, runs=export_cfg["latency_runs"],
                                warmup=export_cfg["latency_warmup"])


def evaluate_onnx_stage(*, onnx_path: str | os.PathLike, report_path: str | os.PathLike,
                        manifest_path: str | os.PathLike, eval_cfg: dict, export_cfg: dict, seed: int,
                        threads: int, out_metrics: str | os.PathLike,
                        evaluator: str | os.PathLike | None = None) -> dict:
    """Evaluate an exported model through ONNX Runtime with the family's own evaluate; add latency.

    Writes DESIGN.md's metrics JSON plus "format" (onnx_fp32 / onnx_int8), "latency_ms", "denormals"
    (export.denormals.denormal_check; a warning when the model runs denormal arithmetic) and, for
    FP32, "parity_max_abs_diff", for INT8 "int8_calibration" and "int8_float_layers". `threads` is for evaluation only; latency uses
    `export_cfg["threads"]`.
    """
    eval_cfg = with_evaluator(eval_cfg, evaluator)
    loaded, report, manifest = load_onnx(onnx_path, threads), read_json(report_path), read_json(manifest_path)
    task, imgsz, meta, model = loaded.task, loaded.imgsz, loaded.meta, loaded.model
    loader = task.loader(manifest, "val", train=False, imgsz=imgsz, batch_size=eval_cfg["batch_size"],
                         workers=0, seed=seed)
    metrics = task.evaluate(model, loader, torch.device("cpu"), eval_cfg, manifest)
    timed = _deploy_latency(loaded, export_cfg, seed)
    latency = {k: timed[0][k] for k in LATENCY_KEYS}  # DESIGN's latency_ms: the reference geometry, first
    denormals = denormal_check(onnx_path, random_input(task, imgsz, 1, seed), threads=export_cfg["threads"],
                               runs=export_cfg["latency_runs"])
    result = metrics_record(stage=meta["stage"], task=task, path=onnx_path, metrics=metrics, params=report["params"],
                            flops=report["flops"], imgsz=imgsz, manifest_path=manifest_path,
                            network_calls=task.network_calls(model, eval_cfg), format=f"onnx_{meta['precision']}",
                            runtime=f"onnxruntime {ort.__version__} CPU", latency_ms=latency, latency=timed,
                            denormals=denormals)
    if denormals["denormal_arithmetic"]:
        log.warning(denormal_warning(onnx_path, denormals))
    if meta["precision"] == "fp32":
        result["parity_max_abs_diff"] = report["parity"]["max_abs_diff"]
    else:  # how it was quantized, for the report's INT8 rows
        result |= {k: meta[k] for k in ("int8_calibration", "int8_float_layers") if k in meta}
    write_json(out_metrics, result)
    log.info("%s: %s", onnx_path, result)
    return result
