"""SiLU as a 256-entry table on the quantized tensor (`export.silu_lut`, `quantize_int8(silu="lut")`):
exact on every uint8 code, and no float SiLU left in the graph ONNX Runtime runs (a few seconds)."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from pipeline_lib.export import export_onnx, kernel_counts, output_error, quantize_int8, run_outputs
from pipeline_lib.export.silu_lut import lookup_silu


def _float_silu_island(x_scale, x_zero, y_scale, y_zero) -> onnx.ModelProto:
    """uint8 codes -> DequantizeLinear -> QuickGelu (SiLU) -> QuantizeLinear: what quantize_int8 leaves per SiLU."""
    inits = [numpy_helper.from_array(np.array(v, dtype), name) for v, dtype, name in
             ((x_scale, np.float32, "xs"), (x_zero, np.uint8, "xz"), (y_scale, np.float32, "ys"), (y_zero, np.uint8, "yz"))]
    nodes = [helper.make_node("DequantizeLinear", ["codes", "xs", "xz"], ["x"], name="dq"),
             helper.make_node("QuickGelu", ["x"], ["silu"], domain="com.microsoft", alpha=1.0, name="act"),
             helper.make_node("QuantizeLinear", ["silu", "ys", "yz"], ["y"], name="q")]
    graph = helper.make_graph(nodes, "silu", [helper.make_tensor_value_info("codes", TensorProto.UINT8, [1, 1, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1, 16, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])


def _quantize_linear(scale, zero) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"), numpy_helper.from_array(np.array(zero, np.uint8), "z")]
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "q",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1, 16, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("x_scale, x_zero, y_scale, y_zero", [
    (0.05, 128, 0.04, 7),     # SiLU's range (-0.28 .. 6.4) within y's: every code distinct
    (0.11, 200, 0.02, 30),    # y's range clips large outputs at 255 and SiLU's minimum near 0
    (0.013, 0, 0.013, 0),     # inputs all >= 0, as after a ReLU-like calibration
])
def test_the_lookup_equals_float_silu_then_quantize_on_every_uint8_code(x_scale, x_zero, y_scale, y_zero):
    model = _float_silu_island(x_scale, x_zero, y_scale, y_zero)
    assert lookup_silu(model) == 1
    onnx.checker.check_model(model)
    assert [node.op_type for node in model.graph.node] == ["Cast", "Gather"]
    codes = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    got = _run(model, codes)
    # Independent reference: torch's SiLU (in float64) through ONNX's QuantizeLinear
    x = (torch.arange(256, dtype=torch.float64) - x_zero) * float(np.float32(x_scale))
    silu = nn.functional.silu(x).float().numpy().reshape(codes.shape)
    np.testing.assert_array_equal(got, _run(_quantize_linear(y_scale, y_zero), silu))


class SiluNet(nn.Module):
    """Conv-SiLU layers, one residual add and a concat, as in the detector's C3 blocks."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.a, self.b = nn.Conv2d(3, 16, 3, 2, 1), nn.Conv2d(16, 16, 3, 1, 1), nn.Conv2d(16, 16, 1)
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = nn.functional.silu(self.stem(x))
        y = nn.functional.silu(self.a(x)) + x
        return self.head(torch.cat([y, nn.functional.silu(self.b(y))], 1))


def test_quantize_with_lut_runs_no_float_silu_and_matches_the_float_silu_int8_model(tmp_path):
    fp32 = tmp_path / "silu.onnx"
    export_onnx(SiluNet().eval(), torch.rand(1, 3, 32, 32), fp32, output_names=["out"])
    batches = [torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)).numpy() for i in range(4)]
    float_silu, lut = tmp_path / "float.int8.onnx", tmp_path / "lut.int8.onnx"
    assert quantize_int8(fp32, float_silu, batches, silu="float")["float_silu_nodes"] == 3
    report = quantize_int8(fp32, lut, batches, silu="lut")
    assert (report["silu_tables"], report["float_silu_nodes"]) == (3, 0)
    assert kernel_counts(float_silu)["QuickGelu"] == 3
    kernels = kernel_counts(lut)
    assert not {"QuickGelu", "Sigmoid", "Mul"} & set(kernels)  # no float SiLU island
    assert kernels["Gather"] == 3 and kernels["QLinearConv"] == 4  # the integer convs are still fused around the tables
    # looked up channels-last, so ORT's layout Transposes cancel around the tables as around QuickGelu
    assert kernels.get("Transpose", 0) == kernel_counts(float_silu).get("Transpose", 0)
    images = np.concatenate(batches)
    assert output_error(run_outputs(float_silu, images), run_outputs(lut, images)) < 1e-3
    assert output_error(run_outputs(fp32, images), run_outputs(lut, images)) < 0.1
