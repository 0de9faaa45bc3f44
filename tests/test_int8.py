"""INT8 calibration methods and the choice of float layers, on a five-conv model (real ONNX export
and ONNX Runtime quantization, no mocks; about 20 s on 2 cores)."""
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from pipeline_lib.errors import UserError
from pipeline_lib.export import (CALIBRATIONS, OrtModel, export_onnx, output_error, quantize_int8, read_metadata,
                                 run_outputs, select_float_layers)

LAYERS = ["stem", "body.0", "body.1", "body.2", "head"]


class Tiny(nn.Module):
    """Conv-ReLU layers of mixed widths; the head's output has two columns of different scales."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.body = nn.ModuleList([nn.Conv2d(16, 32, 3, 1, 1), nn.Conv2d(32, 32, 1), nn.Conv2d(32, 16, 3, 1, 1)])
        self.head = nn.Conv2d(16, 2, 1)
        for conv in self.modules():  # He init, zero bias: outputs vary across images and positions
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for conv in self.body:
            x = torch.relu(conv(x))
        return self.head(x).flatten(2).transpose(1, 2) * torch.tensor([10.0, 1.0])  # (B, HW, 2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    export_onnx(Tiny().eval(), torch.rand(1, 3, 32, 32), root / "tiny.onnx", output_names=["out"])
    batches = [torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)).numpy() for i in range(6)]
    return {"root": root, "fp32": root / "tiny.onnx", "batches": batches, "images": np.concatenate(batches)}


def float_convs(path) -> set[str]:
    """Layers whose Conv reads its float weight: not quantized (a quantized one reads a DequantizeLinear)."""
    return {node.input[1].removesuffix(".weight") for node in onnx.load(str(path)).graph.node
            if node.op_type == "Conv" and node.input[1].endswith(".weight")}


@pytest.mark.parametrize("method", CALIBRATIONS)
def test_each_calibration_method_gives_a_loadable_int8_model_close_to_fp32(tiny, method):
    out = tiny["root"] / f"{method}.int8.onnx"
    report = quantize_int8(tiny["fp32"], out, tiny["batches"], calibrate_method=method,
                           percentile=99.99 if method == "percentile" else None, metadata={"int8_calibration": method})
    assert report["calibrate_method"] == method and report["quantizable_layers"] == LAYERS
    assert report["extra_options"] == ({"CalibPercentile": 99.99} if method == "percentile" else {})
    assert read_metadata(out)["int8_calibration"] == method
    assert float_convs(out) == set()  # every conv quantized
    x = torch.from_numpy(tiny["images"])
    assert OrtModel(out)(x).shape == OrtModel(tiny["fp32"])(x).shape == (6, 256, 2)
    assert 0 < output_error(run_outputs(tiny["fp32"], tiny["images"]), run_outputs(out, tiny["images"])) < 0.1


def test_output_error_weighs_each_output_column_by_its_own_spread():
    reference = np.stack([np.linspace(0, 100, 50), np.linspace(0, 1, 50)], axis=1)[None]  # pixels and scores
    off_by = np.array([1.0, 0.01])  # one percent of each column's range
    error = output_error([reference], [reference + off_by])
    assert error == pytest.approx(float(np.mean(off_by / reference[0].std(0))))
    assert output_error([reference], [reference + [1.0, 0.0]]) == pytest.approx(error / 2, rel=1e-6)


def test_auto_keeps_the_most_sensitive_layers_float_within_the_budget(tiny):
    settings = {"stem": "float"}  # a fixed rule: the stem is float and not probed
    all_int8 = select_float_layers(tiny["fp32"], tiny["batches"], max_error=1.0, **settings)
    assert all_int8["float_layers"] == [] and all_int8["search"] == []  # within budget already: nothing probed further
    assert {row["layer"] for row in all_int8["layers"]} == set(LAYERS) - {"stem"}
    top = all_int8["layers"][0]  # most sensitive first
    assert top["sensitivity"] > 0 and [r["sensitivity"] for r in all_int8["layers"]] == sorted(
        (r["sensitivity"] for r in all_int8["layers"]), reverse=True)
    budget = all_int8["error_all_int8"] - top["sensitivity"] / 2  # the top layer alone is enough
    selection = select_float_layers(tiny["fp32"], tiny["batches"], max_error=budget, **settings)
    rows, chosen = selection["layers"], selection["float_layers"]
    assert chosen == [top["layer"]] and [r["layer"] for r in rows if r["float"]] == chosen
    assert selection["error"] == top["error_when_float"] <= budget
    assert selection["search"] == [{"float_layers": 1, "error": selection["error"]}]
    for row in rows:
        assert row["sensitivity"] == pytest.approx(selection["error_all_int8"] - row["error_when_float"])
    out = tiny["root"] / "auto.int8.onnx"
    report = quantize_int8(tiny["fp32"], out, tiny["batches"], float_layers=chosen, **settings)
    assert report["float_layers"] == chosen
    assert float_convs(out) == {"stem", *chosen}  # the chosen layers' Conv reads float weights: not quantized
    error = output_error(run_outputs(tiny["fp32"], tiny["images"]), run_outputs(out, tiny["images"]))
    assert error == pytest.approx(selection["error"], rel=1e-5)


def test_unknown_float_layer_is_one_line_naming_the_key_and_real_layers(tiny):
    with pytest.raises(UserError) as info:
        quantize_int8(tiny["fp32"], tiny["root"] / "bad.int8.onnx", tiny["batches"], float_layers=["body.9"])
    message = str(info.value)
    assert "\n" not in message and not (tiny["root"] / "bad.int8.onnx").exists()
    assert message.startswith("export.int8_float_layers: 'body.9' is not a layer of ")
    assert "its quantizable layers: stem, body.0, body.1, body.2, ... 5 in all" in message
