"""INT8 static quantization of an FP32 ONNX model with onnxruntime.quantization (QDQ format).

    batches = [np.random.rand(1, 3, 128, 128).astype(np.float32)]   # real: N training images
    heads = ["detect.m.0.weight", "detect.m.1.weight", "detect.m.2.weight"]
    report = quantize_int8("model.onnx", "model.int8.onnx", batches, keep_float_after=heads,
                           float_heads=True, stem="space_to_depth")

Steps: optionally fuse SiLU (below), `quant_pre_process` (symbolic shape inference + ORT's basic
graph optimizations), then `quantize_static` in QDQ format with per-channel symmetric int8
weights and activation ranges from calibration over the given batches.

Choices that decide whether INT8 is faster at all on x86 (measured in docs/EXPORT.md):
- activations are **uint8** (U8S8). ORT fuses DequantizeLinear -> Conv -> QuantizeLinear into a
  QLinearConv kernel on x86 only for uint8 activations; with int8 activations every op stays a
  float op between Q/DQ pairs and the model gets 2-5x slower than FP32.
- everything downstream of the prediction heads stays float, and the heads too. The detector's
  decode concatenates pixel coordinates with [0, 1] scores; one uint8 scale for both would round
  the scores away.
- the convolution reading the image: 3 input channels fit none of ORT's fast int8 convolution
  kernels, and the generic int8 path is slower than FP32 there. A 6x6 stride-2 stem (YOLOv5) is
  rewritten as SpaceToDepth + 3x3 conv over 12 channels (`space_to_depth_stem`) and quantized;
  other stems stay float.
- nodes that do not read the image stay float (`conditioning_nodes`): a diffusion model's time
  embedding scales t by 1000 before its sinusoids, and one uint8 scale over that range steps by
  ~4 timesteps; those per-sample vectors are a negligible share of the work.
- SiLU stays float (`fuse_silu`): quantized, it costs two kernels that outweigh the int8 gain.
  `silu="lut"` then replaces each float SiLU by an exact table lookup on its uint8 input (`silu_lut`).
  ReLU needs nothing: the quantizer folds it into the preceding QLinearConv's output range,
  which is why a model meant to run in INT8 pays to use ReLU (docs/EXPORT.md measures both).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..errors import UserError
from ..inputs import batch_size, ort_feed
from ..io import write_bytes
from .silu_lut import lookup_silu

__all__ = ["BatchReader", "CALIBRATIONS", "downstream_nodes", "conditioning_nodes", "weighted_layers", "fuse_silu",
           "space_to_depth_stem", "quantize_int8"]

_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}
CALIBRATIONS = tuple(_METHODS)
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class BatchReader(CalibrationDataReader):
    """Feeds calibration batches to the quantizer, once each; rewind() restarts. A batch is one
    float32 NCHW array, or a tuple with one array per model input (`input_names`, graph order)."""

    def __init__(self, input_names: Sequence[str], batches: Sequence):
        self.input_names, self.batches, self._next = list(input_names), list(batches), 0

    def get_next(self) -> dict | None:
        if self._next >= len(self.batches):
            return None
        self._next += 1
        return ort_feed(self.input_names, self.batches[self._next - 1])

    def rewind(self) -> None:
        self._next = 0


def downstream_nodes(model: onnx.ModelProto, initializers: Iterable[str], *, include_readers: bool = False) -> list[str]:
    """Names of every node that depends on the output of a node reading one of `initializers`.

    With the prediction heads' weight names this is the post-processing after the heads (the
    detector's decode), which must stay float; the heads themselves are included only with
    `include_readers`.
    """
    wanted = set(initializers)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    readers = [node for node in model.graph.node if wanted & set(node.input)]
    frontier = [out for node in readers for out in node.output]
    found: dict[str, None] = dict.fromkeys(node.name for node in readers) if include_readers else {}  # ordered set
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.name not in found:
                found[node.name] = None
                frontier.extend(node.output)
    return list(found)


def conditioning_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that do not depend on the first graph input (the image): the embeddings
    of a model's other inputs (diffusion time, class label), which run once per sample."""
    reached = {model.graph.input[0].name}
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if reached.intersection(node.input):
            reached.update(node.output)
    return [node.name for node in model.graph.node if not reached.intersection(node.output)]


def weighted_layers(model: onnx.ModelProto) -> dict[str, str]:
    """{layer: node name} of the nodes with a weight initializer (Conv, Gemm, ...), in graph order.

    A layer is named by its weight without ".weight" (the PyTorch module, e.g. "stage2.0.conv"):
    the exporter keeps parameter names, while node names are generated and change between exports.
    """
    inits = {init.name for init in model.graph.initializer}
    return {node.input[1].removesuffix(".weight"): node.name for node in model.graph.node
            if node.op_type in _WEIGHTED and len(node.input) > 1 and node.input[1] in inits}


def _float_layer_nodes(layers: dict[str, str], names: Iterable[str], quantizable: Sequence[str], source) -> list[str]:
    """Node names of the `names` layers; an unknown name is a UserError listing a few quantizable layers."""
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise UserError(f"export.int8_float_layers: {unknown[0]!r} is not a layer of {source} (its quantizable "
                        f"layers: {', '.join(quantizable[:4])}, ... {len(quantizable)} in all)")
    return [layers[name] for name in names]


def fuse_silu(model: onnx.ModelProto) -> int:
    """Replace each x * Sigmoid(x) by one com.microsoft.QuickGelu(x, alpha=1) node in place; return how many.

    QuickGelu with alpha 1 is SiLU, and it is the node ORT's own optimizer makes of this pattern
    in an FP32 graph. The quantizer leaves it float (DQ -> QuickGelu -> Q, three vectorised
    kernels); without this, SiLU becomes QLinearSigmoid + QLinearMul, two table/scalar kernels
    that cost more than the int8 convolutions save on small inputs. The cost: the model then
    needs ONNX Runtime (which the QDQ fusions need anyway to be fast).
    """
    graph = model.graph
    nodes = list(graph.node)  # one set of node objects, so id() identifies a node below
    producer = {out: node for node in nodes for out in node.output}
    uses: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    replaced: dict[int, onnx.NodeProto] = {}  # id(Mul) -> QuickGelu
    dropped: set[int] = set()  # id(Sigmoid)
    for node in nodes:
        if node.op_type != "Mul":
            continue
        for x, s in (node.input, node.input[::-1]):
            sig = producer.get(s)
            if sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x and uses[s] == 1:
                replaced[id(node)] = onnx.helper.make_node("QuickGelu", [x], list(node.output), name=f"{node.name}_silu",
                                                           domain="com.microsoft", alpha=1.0)
                dropped.add(id(sig))
                break
    if replaced:
        kept = [replaced.get(id(n), n) for n in nodes if id(n) not in dropped]
        del graph.node[:]
        graph.node.extend(kept)
        if not any(op.domain == "com.microsoft" for op in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return len(replaced)


def space_to_depth_stem(model: onnx.ModelProto) -> bool:
    """Rewrite the convolution reading the image, if it is k=2m, stride 2, even pads (YOLOv5's 6x6/2
    stem), as SpaceToDepth(2) -> m x m stride-1 convolution over 4x the channels, in place.

    The same arithmetic: output pixel (i, j) reads input rows 2i-P+u, u < 2m; writing u = 2p + a
    makes that s2d row i - P/2 + p, sub-row a, channel (2a + b)·C + c (ONNX's DCR order). What
    changes is the kernel ORT picks: 3 input channels fit none of its int8 convolution kernels
    (the generic path made the int8 stem 2.4x slower than FP32), while 12 fit the symmetric int8
    kernels, so the stem can be quantized and gets faster. YOLOv5's older Focus stem was this
    layer written by hand. Returns whether a stem was rewritten.
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    for index, node in enumerate(graph.node):
        if node.op_type != "Conv" or node.input[0] != graph.input[0].name or node.input[1] not in inits:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        k, strides, pads = attrs.get("kernel_shape"), attrs.get("strides"), attrs.get("pads", [0, 0, 0, 0])
        if (attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])) or k is None
                or len(k) != 2 or k[0] != k[1] or k[0] % 2 or strides != [2, 2] or len(set(pads)) != 1 or pads[0] % 2):
            return False
        w = onnx.numpy_helper.to_array(inits[node.input[1]])  # (O, C, 2m, 2m)
        o, c, m = w.shape[0], w.shape[1], k[0] // 2
        w2 = w.reshape(o, c, m, 2, m, 2).transpose(0, 3, 5, 1, 2, 4).reshape(o, 4 * c, m, m)  # [o, a, b, c, p, q]
        inits[node.input[1]].CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(w2), node.input[1]))
        s2d = onnx.helper.make_node("SpaceToDepth", [node.input[0]], [f"{node.name}_s2d"], blocksize=2,
                                    name=f"{node.name}_space_to_depth")
        node.input[0] = s2d.output[0]
        for a in node.attribute:
            if a.name == "kernel_shape":
                a.ints[:] = [m, m]
            elif a.name == "strides":
                a.ints[:] = [1, 1]
            elif a.name == "pads":
                a.ints[:] = [pads[0] // 2] * 4
        graph.node.insert(index, s2d)
        return True
    return False


def _copy_metadata(source: onnx.ModelProto, model: onnx.ModelProto, metadata: dict | None) -> None:
    """`source`'s model properties on `model`, `metadata` entries overwriting them as `slimflow.<key>`."""
    props = {p.key: p.value for p in source.metadata_props}
    props.update({f"slimflow.{k}": json.dumps(v) for k, v in (metadata or {}).items()})
    onnx.helper.set_model_props(model, props)


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, batches: Sequence[np.ndarray], *,
                  per_channel: bool = True, activation_type: str = "uint8", calibrate_method: str = "minmax",
                  keep_float_after: Iterable[str] = (), float_heads: bool = False, stem: str = "int8",
                  silu: str = "float", float_layers: Sequence[str] = (), percentile: float | None = None,
                  op_types: Sequence[str] | None = None, extra_options: dict | None = None,
                  metadata: dict | None = None, calibration_cache: str | os.PathLike | None = None) -> dict:
    """Quantize `fp32_path` into `out_path` (written atomically, metadata kept); return what was done.

    Kept float: the nodes that do not read the image (`conditioning_nodes`), every node downstream
    of the convolutions reading `keep_float_after` (the heads' weight names), those convolutions
    too with `float_heads`, and SiLU with `silu="float"` (see fuse_silu); `silu="lut"` turns each
    of those float SiLUs into an exact 256-entry table lookup on its uint8 input (`silu_lut`). `stem`, for the
    convolutions reading the model input: "int8" quantizes them as they are, "float" keeps them
    float, "space_to_depth" rewrites an even-kernel stride-2 stem so that it quantizes well (see
    space_to_depth_stem) and keeps any other stem float.
    `float_layers` (names of `weighted_layers`) stay float as well; an unknown name is a UserError.
    `activation_type` "uint8" | "int8"; `calibrate_method` "minmax" | "entropy" | "percentile", the
    last with `percentile` (ORT's CalibPercentile, default 99.999);
    `op_types` limits quantization to those op types (None: all the quantizer supports);
    `extra_options` go to quantize_static unchanged (e.g. {"ActivationSymmetric": True});
    `metadata` entries overwrite `slimflow.<key>` model properties (JSON-encoded);
    `calibration_cache`: ORT's file of activation ranges, written by the first call and read (instead
    of calibrating again) by later ones with the same model and method.
    """
    source = onnx.load(str(fp32_path))
    input_name = source.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        fused, pre, quantized = Path(tmp) / "fused.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        silu_nodes = fuse_silu(source) if silu in ("float", "lut") else 0
        stem_rewritten = stem == "space_to_depth" and space_to_depth_stem(source)
        onnx.save(source, str(fused))
        # auto_merge: the exported graph's dynamic batch dimension needs symbol merging at Resize/Concat.
        quant_pre_process(str(fused), str(pre), auto_merge=True)
        pre_model = onnx.load(str(pre))
        excluded = downstream_nodes(pre_model, keep_float_after, include_readers=float_heads)
        conditioning = [n for n in conditioning_nodes(pre_model) if n not in excluded]
        excluded += conditioning
        if stem != "int8" and not stem_rewritten:
            excluded += [n.name for n in pre_model.graph.node if n.op_type == "Conv" and n.input[0] == input_name]
        layers = weighted_layers(pre_model)
        quantizable = [name for name, node in layers.items() if node not in excluded]  # what the rules leave
        excluded += [n for n in _float_layer_nodes(layers, float_layers, quantizable, fp32_path) if n not in excluded]
        options = dict(extra_options or {}) | ({"CalibPercentile": percentile} if percentile is not None else {})
        quantize_static(str(pre), str(quantized), BatchReader([i.name for i in source.graph.input], batches), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
                        activation_type=_TYPES[activation_type], weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, calibrate_method=_METHODS[calibrate_method],
                        extra_options=options, calibration_cache_path=calibration_cache)
        model = onnx.load(str(quantized))
    silu_tables = lookup_silu(model) if silu == "lut" else 0
    _copy_metadata(source, model, metadata)
    onnx.checker.check_model(model)
    write_bytes(out_path, model.SerializeToString())
    return {"format": "QDQ", "activation_type": activation_type, "weight_type": "int8", "per_channel": per_channel,
            "calibrate_method": calibrate_method, "calibration_images": sum(batch_size(b) for b in batches),
            "op_types": list(op_types) if op_types else "all supported", "extra_options": options,
            "silu": silu, "float_silu_nodes": silu_nodes - silu_tables, "silu_tables": silu_tables, "stem": stem,
            "stem_space_to_depth": stem_rewritten,
            "float_nodes": len(excluded), "float_conditioning_nodes": len(conditioning),
            "float_layers": list(float_layers),
            "quantizable_layers": quantizable}
