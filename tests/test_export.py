"""ONNX export verified in ONNX Runtime, INT8 through the shared evaluate path, latency records.

Real exports of tiny detectors (torch.export + ONNX Runtime, no mocks); about 45 s on 2 cores.
"""
import copy

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from pipeline_lib.checkpoint import save_checkpoint
from pipeline_lib.config import defaults
from pipeline_lib.errors import UserError
from pipeline_lib.export import (LATENCY_KEYS, OrtModel, check_parity, export_onnx, kernel_counts, max_abs_diff, ort_latency, quantize_int8, read_metadata, space_to_depth_stem, torch_latency)
from pipeline_lib.steps import evaluate_onnx_stage, export_stage, quantize_stage
from pipeline_lib.io import read_json, write_json
from pipeline_lib.slimming import plan_prune, prune_model
from pipeline_lib.tasks import get_task

TASK = get_task("detection")
ANCHORS = [[4, 5, 8, 10, 12, 8], [10, 20, 20, 15, 19, 40], [38, 30, 50, 65, 60, 60]]  # pixels at 64 px
CFG = {**defaults()["export"], "calibration_images": 6, "latency_runs": 50, "latency_warmup": 2}
EVAL = {**defaults()["evaluate"], "batch_size": 4}


def _detector(nc=3, seed=0, act="silu"):
    """A YOLOv5n-layout detector with random BN statistics, so that every channel matters."""
    torch.manual_seed(seed)
    model = TASK.build_model({"family": "detection", "name": "yolov5n",
                              "kwargs": {"nc": nc, "scale": "n", "anchors": ANCHORS, "shortcut": True, "act": act}})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny dataset, a checkpoint of a 64-px detector, and its export through export_stage."""
    root = tmp_path_factory.mktemp("export")
    dataset_cfg = {"path": None, "synthetic": {"n_train": 8, "n_val": 4, "imgsz": 64, "difficulty": 0.2}}
    manifest = TASK.prepare_dataset(dataset_cfg, root / "data", seed=0)
    write_json(root / "dataset.json", manifest)
    model = _detector(nc=manifest["nc"])
    arch = {"family": "detection", "name": "yolov5n",
            "kwargs": {"nc": manifest["nc"], "scale": "n", "anchors": ANCHORS, "shortcut": True}}
    save_checkpoint(root / "tiny.pt", model, arch, {"stage": "tiny", "imgsz": 64, "names": manifest["names"]})
    report = export_stage(checkpoint=root / "tiny.pt", manifest_path=root / "dataset.json", export_cfg=CFG,
                          out_onnx=root / "tiny.onnx", out_report=root / "tiny.json")
    return {"root": root, "model": model, "report": report, "manifest": manifest}


def test_export_stage_writes_checked_onnx_with_named_io_and_dynamic_input(exported):
    root, report = exported["root"], exported["report"]
    proto = onnx.load(str(root / "tiny.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "images" and out.name == "detections"
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"  # symbolic batch
    channels, height, width = inp.type.tensor_type.shape.dim[1:]
    # the detector's height and width are dynamic too: a model trained at 64 px runs at 640
    assert channels.dim_value == 3 and height.dim_param and width.dim_param and not height.dim_value
    assert read_metadata(root / "tiny.onnx")["heads"] == ["detect.m.0.weight", "detect.m.1.weight", "detect.m.2.weight"]
    # parity on random inputs (batch 1 and 3) and real val images, all within the default 1e-4
    assert set(report["parity"]["inputs"]) == {"random batch 1", "random batch 3", "val images", "random 640 px"}
    assert report["parity"]["max_abs_diff"] <= 1e-4 == report["parity"]["tolerance"]
    # the graph is the eval-mode output: decoded (B, N, 5+nc), N = 3 anchors * (8² + 4² + 2²) at 64 px
    x = torch.rand(5, 3, 64, 64)
    with torch.no_grad():
        ref = exported["model"](x)
    got = OrtModel(root / "tiny.onnx")(x)
    assert got.shape == ref.shape == (5, 3 * 84, 5 + exported["manifest"]["nc"])
    assert torch.allclose(got, ref, atol=1e-4, rtol=0)


def test_pruned_detector_at_a_second_input_size_exports_with_parity(tmp_path):
    """The fixture covers a full detector at 64 px; this one is pruned and exported at 96 px."""
    model = _detector(seed=2)
    full_widths = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    example = torch.rand(1, 3, 96, 96)
    plan = plan_prune(model, example, ratio=0.4, min_channels=8, round_to=8, keep=model.keep_width_modules())
    prune_model(model, example, plan)
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert min(widths) >= 8 and sum(widths) < 0.8 * full_widths
    export_onnx(model.eval(), example, tmp_path / "pruned96.onnx", output_names=["detections"])
    report = check_parity(model, tmp_path / "pruned96.onnx", {"random": torch.rand(2, 3, 96, 96)}, tol=1e-4)
    assert report["inputs"]["random"]["shape"] == [2, 3, 96, 96]
    assert report["max_abs_diff"] <= 1e-4


def test_parity_allowance_grows_with_the_output_like_allclose():
    reference = torch.tensor([[100.0, 0.5]])  # a box coordinate in pixels and a score
    candidate = torch.tensor([[100.0005, 0.5000001]])
    assert max_abs_diff(reference, candidate) == pytest.approx(5e-4, rel=0.02)  # float32 spacing at 100
    # allclose(rtol=1e-5): 1e-3 allowed at 100 px, so 1e-4 of absolute tolerance is left unused
    assert max_abs_diff(reference, candidate, rtol=1e-5) < 0
    assert max_abs_diff(reference, candidate, rtol=1e-6) == pytest.approx(4e-4, rel=0.05)
    assert max_abs_diff(reference, candidate[:, :1]) == float("inf")


def test_parity_failure_is_one_clear_user_error(exported):
    changed = copy.deepcopy(exported["model"])
    with torch.no_grad():
        changed.detect.m[0].bias += 0.5  # the exported graph no longer computes this model
    with pytest.raises(UserError, match=r"tiny\.onnx: ONNX Runtime differs from PyTorch by .* export\.parity_tol"):
        check_parity(changed, exported["root"] / "tiny.onnx", {"random": torch.rand(1, 3, 64, 64)}, tol=1e-4)


def test_int8_runs_through_the_shared_evaluate_path(exported):
    root = exported["root"]
    q = quantize_stage(onnx_path=root / "tiny.onnx", report_path=root / "tiny.json", manifest_path=root / "dataset.json",
                       export_cfg=CFG, out_onnx=root / "tiny.int8.onnx", out_report=root / "tiny.int8.json")
    assert q["quantization"]["calibration_images"] == 6 and q["quantization"]["per_channel"]
    # uint8 activations let ORT fuse the QDQ convolutions into integer kernels (int8 ones would not on x86)
    assert q["ort_kernels"].get("QLinearConv", 0) > 50 and q["ort_kernels"].get("QuickGelu", 0) > 50
    assert read_metadata(root / "tiny.int8.onnx")["precision"] == "int8"
    results = {}
    for name in ("tiny", "tiny.int8"):
        results[name] = evaluate_onnx_stage(onnx_path=root / f"{name}.onnx", report_path=root / f"{name}.json",
                                            manifest_path=root / "dataset.json", eval_cfg=EVAL, export_cfg=CFG,
                                            seed=0, threads=1, out_metrics=root / f"{name}.metrics.json")
    fp32, int8 = results["tiny"], results["tiny.int8"]
    assert read_json(root / "tiny.int8.metrics.json") == int8
    for r, fmt in ((fp32, "onnx_fp32"), (int8, "onnx_int8")):
        assert r["format"] == fmt and set(r["metrics"]) == set(TASK.metric_keys)
        assert {"stage", "task", "checkpoint", "fitness", "params", "flops", "file_bytes"} <= set(r)
        assert tuple(r["latency_ms"]) == LATENCY_KEYS and r["latency_ms"]["runs"] == 50
    assert fp32["parity_max_abs_diff"] <= 1e-4 and "parity_max_abs_diff" not in int8
    assert int8["file_bytes"] < 0.5 * fp32["file_bytes"]
    # FP32 through ORT scores like the PyTorch model on the same evaluate path
    loader = TASK.loader(exported["manifest"], "val", train=False, imgsz=64, batch_size=4, workers=0, seed=0)
    torch_metrics = TASK.evaluate(exported["model"], loader, torch.device("cpu"), EVAL, exported["manifest"])
    assert fp32["metrics"] == pytest.approx(torch_metrics, abs=1e-3)


def test_relu_detector_runs_integer_kernels_from_stem_to_heads(tmp_path):
    """With ReLU (the default finetune's act) the quantizer folds the activation into QLinearConv, and
    the 6x6/2 stem, rewritten with SpaceToDepth, quantizes too: no float op and no DQ/Q pair is
    left between the input and the float heads."""
    model = _detector(act="relu")
    x = torch.rand(1, 3, 64, 64)
    export_onnx(model, x, tmp_path / "relu.onnx", output_names=["detections"])
    calibration = [torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(i)).numpy() for i in range(4)]
    heads = [f"detect.m.{i}.weight" for i in range(3)]
    report = quantize_int8(tmp_path / "relu.onnx", tmp_path / "relu.int8.onnx", calibration, keep_float_after=heads,
                           float_heads=True, stem="space_to_depth")
    assert report["stem_space_to_depth"]
    kernels = kernel_counts(tmp_path / "relu.int8.onnx")
    assert kernels["QLinearConv"] == 57 and kernels["Conv"] == 3  # the 3 heads stay float
    assert kernels["SpaceToDepth"] == 1 and kernels["QuantizeLinear"] == 1  # the image, once
    assert not {"Relu", "QuickGelu"} & set(kernels) and kernels["Sigmoid"] == 1  # the one of the decode
    assert kernels["DequantizeLinear"] == 3  # before each head


def test_space_to_depth_stem_computes_the_same_outputs(tmp_path):
    export_onnx(_detector(seed=3), torch.rand(1, 3, 64, 64), tmp_path / "m.onnx", output_names=["detections"])
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert space_to_depth_stem(proto)
    stem = next(n for n in proto.graph.node if n.op_type == "Conv")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in stem.attribute}
    assert (attrs["kernel_shape"], attrs["strides"], attrs["pads"]) == ([3, 3], [1, 1], [1, 1, 1, 1])
    onnx.save(proto, str(tmp_path / "s2d.onnx"))
    x = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(OrtModel(tmp_path / "s2d.onnx")(x), OrtModel(tmp_path / "m.onnx")(x), atol=1e-4, rtol=1e-5)
    assert not space_to_depth_stem(proto)  # the stem is a 3x3/1 conv now: nothing left to rewrite


def test_latency_records_have_the_design_keys(exported):
    x = torch.rand(1, 3, 64, 64)
    ort = ort_latency(exported["root"] / "tiny.onnx", x, threads=1, runs=5, warmup=1)
    eager = torch_latency(exported["model"], x, threads=1, runs=5, warmup=1)
    for lat in (ort, eager):
        assert tuple(lat) == LATENCY_KEYS
        assert lat["runs"] == 5 and lat["threads"] == 1 and lat["batch"] == 1
        assert 0 < lat["median"] <= lat["p90"] and np.isfinite(lat["p90"])


def test_int8_settings_from_the_config_reach_the_model_report_and_metrics(exported):
    root = exported["root"]
    cfg = {**CFG, "int8_calibration": "percentile", "int8_percentile": 99.9, "int8_float_layers": ["stage2.0.conv"]}
    q = quantize_stage(onnx_path=root / "tiny.onnx", report_path=root / "tiny.json", manifest_path=root / "dataset.json",
                       export_cfg=cfg, out_onnx=root / "pct.int8.onnx", out_report=root / "pct.int8.json")
    assert q["int8_calibration"] == "percentile" and q["int8_percentile"] == 99.9
    assert q["quantization"]["extra_options"] == {"CalibPercentile": 99.9} and q["float_layer_selection"] is None
    assert q["int8_float_layers"] == q["quantization"]["float_layers"] == ["stage2.0.conv"]
    assert 0 < q["quantization"]["output_error"] < 0.5
    assert {k: read_metadata(root / "pct.int8.onnx")[k] for k in ("int8_calibration", "int8_float_layers")} == \
        {"int8_calibration": "percentile", "int8_float_layers": ["stage2.0.conv"]}
    convs = [n for n in onnx.load(str(root / "pct.int8.onnx")).graph.node if n.op_type == "Conv"]
    assert [n.input[1] for n in convs if n.input[1] == "stage2.0.conv.weight"]  # reads its float weight: not quantized
    metrics = evaluate_onnx_stage(onnx_path=root / "pct.int8.onnx", report_path=root / "pct.int8.json",
                                  manifest_path=root / "dataset.json", eval_cfg=EVAL, export_cfg=CFG, seed=0, threads=1,
                                  out_metrics=root / "pct.metrics.json")
    assert metrics["int8_calibration"] == "percentile" and metrics["int8_float_layers"] == ["stage2.0.conv"]
    with pytest.raises(UserError, match=r"^export\.int8_float_layers: 'stage2\.9\.conv' is not a layer of .*tiny\.onnx "
                                        r"\(its quantizable layers: stem\.conv, stage2\.0\.conv, .*, \.\.\. 57 in all\)$"):
        quantize_stage(onnx_path=root / "tiny.onnx", report_path=root / "tiny.json", manifest_path=root / "dataset.json",
                       export_cfg={**cfg, "int8_float_layers": ["stage2.9.conv"]}, out_onnx=root / "bad.int8.onnx",
                       out_report=root / "bad.int8.json")
