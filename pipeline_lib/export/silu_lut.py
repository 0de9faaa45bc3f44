"""SiLU of a quantized tensor as a 256-entry lookup table, so no float island is left between integer kernels.

    quantize_int8("model.onnx", "model.int8.onnx", batches, silu="lut")   # or, on a QDQ model with QuickGelu:
    count = lookup_silu(model)   # DQ -> QuickGelu -> Q  becomes  Cast -> Gather(table)

After `fuse_silu` and `quantize_static`, each SiLU runs as DequantizeLinear -> QuickGelu ->
QuantizeLinear: three passes over the tensor in float. Its input is uint8, so its output can take
only 256 values: `silu_table` computes them once, in float64, and quantizes them the way
QuantizeLinear would (round half to even, clip). The table lookup is therefore exact: it equals
float SiLU followed by the next QuantizeLinear on every input code. ONNX has no uint8 lookup op,
so it is written with standard ops, Cast(uint8 -> int32) + Gather(table, codes), and the graph
needs no contrib op for it. ORT still fuses the DQ -> Conv -> Q around it into QLinearConv.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["silu_table", "lookup_silu"]

_SILU = ("QuickGelu",)  # what fuse_silu makes of x * Sigmoid(x)


def silu_table(x_scale: float, x_zero: int, y_scale: float, y_zero: int) -> np.ndarray:
    """The uint8 SiLU output for every uint8 input code: quantize(silu(dequantize(code)))."""
    x = (np.arange(256, dtype=np.float64) - int(x_zero)) * np.float64(np.float32(x_scale))
    silu = x / (1.0 + np.exp(-x))
    q = np.rint(silu / np.float64(np.float32(y_scale))) + int(y_zero)  # rint: round half to even, as QuantizeLinear
    return np.clip(q, 0, 255).astype(np.uint8)


def _scalar(inits: dict, name: str):
    """The value of a scalar initializer, or None when it is not one (per-channel, or computed)."""
    if name not in inits:
        return None
    value = numpy_helper.to_array(inits[name])
    return value.reshape(()).item() if value.size == 1 else None


def _quant_params(node: onnx.NodeProto, inits: dict) -> tuple | None:
    """(scale, zero point) of a per-tensor uint8 QuantizeLinear / DequantizeLinear, else None."""
    if len(node.input) < 3 or inits.get(node.input[2]) is None:
        return None
    if inits[node.input[2]].data_type != TensorProto.UINT8:
        return None
    scale, zero = _scalar(inits, node.input[1]), _scalar(inits, node.input[2])
    return None if scale is None or zero is None else (scale, zero)


def _lookup_nodes(name: str, codes: str, table: str, out: str, rank: int | None) -> list[onnx.NodeProto]:
    """Cast + Gather from `codes` to `out`; an NCHW tensor is looked up channels-last, between two Transposes.

    ORT runs its integer convolutions channels-last and removes a Transpose pair around any op it
    knows to be elementwise, but not around Gather: a plain lookup cost two layout Transposes per
    SiLU. Written channels-last here, the Transposes cancel against ORT's own.
    """
    nhwc = rank == 4
    src, dst = (f"{name}_nhwc", f"{name}_lut_nhwc") if nhwc else (codes, out)
    nodes = [helper.make_node("Cast", [src], [f"{name}_codes"], to=TensorProto.INT32, name=f"{name}_cast"),
             helper.make_node("Gather", [table, f"{name}_codes"], [dst], axis=0, name=f"{name}_lookup")]
    if nhwc:
        nodes = [helper.make_node("Transpose", [codes], [src], perm=[0, 2, 3, 1], name=f"{name}_to_nhwc"), *nodes,
                 helper.make_node("Transpose", [dst], [out], perm=[0, 3, 1, 2], name=f"{name}_to_nchw")]
    return nodes


def lookup_silu(model: onnx.ModelProto) -> int:
    """Replace each DequantizeLinear -> QuickGelu -> QuantizeLinear (per-tensor uint8, each output
    read by the next node only) by Cast + Gather on a 256-entry table, in place; return how many."""
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in graph.value_info if v.type.tensor_type.HasField("shape")}
    dropped, replacement = set(), {}  # ids of nodes removed; id(Q) -> the new nodes taking its place
    for act in graph.node:
        dq = producer.get(act.input[0]) if act.op_type in _SILU else None
        q = readers.get(act.output[0], [None])[0]
        if (dq is None or dq.op_type != "DequantizeLinear" or q is None or q.op_type != "QuantizeLinear"
                or len(readers[dq.output[0]]) != 1 or len(readers[act.output[0]]) != 1
                or graph_outputs & {dq.output[0], act.output[0]}):
            continue
        x_params, y_params = _quant_params(dq, inits), _quant_params(q, inits)
        if x_params is None or y_params is None:
            continue
        table = numpy_helper.from_array(silu_table(*x_params, *y_params), f"{act.name}_silu_table")
        graph.initializer.append(table)
        replacement[id(q)] = _lookup_nodes(act.name, dq.input[0], table.name, q.output[0], ranks.get(act.output[0]))
        dropped.update({id(dq), id(act)})
    if replacement:
        kept = [new for node in graph.node if id(node) not in dropped for new in replacement.get(id(node), [node])]
        del graph.node[:]
        graph.node.extend(kept)
        used = {name for node in graph.node for name in node.input}
        unused = [init for init in graph.initializer if init.name not in used]  # the removed nodes' scales
        for init in unused:
            graph.initializer.remove(init)
    return len(replacement)
