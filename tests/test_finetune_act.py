"""stages.finetune.act: the finetune swaps the pruned model's SiLU for ReLU, and the INT8 graph
ONNX Runtime runs has no float activation island left (issue 27: INT8 that pays on the slim default)."""
from collections import Counter

import onnx
import pytest
from torch import nn

from pipeline_lib.checkpoint import load_checkpoint, save_checkpoint
from pipeline_lib.config import defaults, stage_config
from pipeline_lib.errors import UserError
from pipeline_lib.export import kernel_counts
from pipeline_lib.steps import export_stage, quantize_stage, train_stage
from pipeline_lib.tasks import build_from_checkpoint, load_model, validation_settings

pytestmark = pytest.mark.e2e  # trains one epoch on the tiny run's pruned model


def _finetune(tiny_run, tmp_path, act: str):
    """One epoch of the finetune stage from the tiny run's pruned model with `stages.finetune.act`, into tmp_path."""
    cfg = defaults("detection")
    cfg["train"].update(epochs=1, batch_size=8, nominal_batch_size=8, workers=0, warmup_epochs=0)
    cfg["model"]["imgsz"] = 64
    cfg["stages"]["finetune"] = {"act": act}
    out = tmp_path / "pruned_finetuned.pt"
    train_stage(label="pruned_finetuned", train_cfg=stage_config(cfg, "pruned_finetuned"), model_cfg=cfg["model"],
                family="detection", validation=validation_settings(cfg), seed=0, device="cpu",
                manifest_path=tiny_run / "results/data/dataset.json", init_checkpoint=tiny_run / "results/pruned.pt",
                out_checkpoint=out, out_csv=tmp_path / "finetune.csv", workdir=tmp_path / "work")
    return out


def test_relu_swap_reaches_the_int8_graph(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_run)  # the manifest's image paths are relative to the run's folder
    checkpoint = _finetune(tiny_run, tmp_path, "relu")
    loaded = load_model(checkpoint, family="detection")
    kinds = {type(m) for m in loaded.model.modules()}
    assert loaded.ckpt["arch"]["kwargs"]["act"] == "relu" and nn.ReLU in kinds and nn.SiLU not in kinds
    pruned = load_model(tiny_run / "results/pruned.pt").model.state_dict()
    assert {k: v.shape for k, v in loaded.model.state_dict().items()} == {k: v.shape for k, v in pruned.items()}

    cfg = defaults("detection")["export"]
    manifest = tiny_run / "results/data/dataset.json"
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    export_stage(checkpoint=checkpoint, manifest_path=manifest, export_cfg=cfg, out_onnx=fp32,
                 out_report=tmp_path / "m.json")
    quantize_stage(onnx_path=fp32, report_path=tmp_path / "m.json", manifest_path=manifest, export_cfg=cfg,
                   out_onnx=int8, out_report=tmp_path / "m.int8.json")
    exported = Counter(node.op_type for node in onnx.load(str(fp32)).graph.node)
    assert exported["Relu"] == sum(isinstance(m, nn.ReLU) for m in loaded.model.modules())
    assert exported["Sigmoid"] <= 1  # the decode's, not one per conv as with SiLU
    kernels = kernel_counts(int8)
    assert kernels.get("QLinearConv", 0) > 10  # the convolutions run in integer ...
    assert not {"QuickGelu", "HardSigmoid", "Relu"} & set(kernels)  # ... ReLU folded into them, while
    silu = kernel_counts(tiny_run / "results/export/pruned_finetuned.int8.onnx")  # the chain's SiLU model
    assert silu.get("QuickGelu", 0) > 10  # keeps a float island (DQ -> QuickGelu -> Q) per conv;
    assert kernels["DequantizeLinear"] < silu["DequantizeLinear"] / 4  # ReLU's DQs: only the float heads' and decode's


def test_act_without_an_activation_setting_is_one_line(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_run)  # as above
    ckpt = load_checkpoint(tiny_run / "results/pruned.pt")
    kwargs = {k: v for k, v in ckpt["arch"]["kwargs"].items() if k != "act"}  # an arch from before `act`
    arch = {**ckpt["arch"], "kwargs": kwargs}
    parent = tmp_path / "pruned.pt"
    save_checkpoint(parent, build_from_checkpoint({**ckpt, "arch": arch}), arch, ckpt["meta"])
    cfg = defaults("detection")
    cfg["stages"]["finetune"] = {"act": "relu"}
    with pytest.raises(UserError, match=r"pruned\.pt: stages\.finetune\.act='relu', but .* no activation setting"):
        train_stage(label="pruned_finetuned", train_cfg=stage_config(cfg, "pruned_finetuned"), model_cfg=cfg["model"],
                    family="detection", validation=validation_settings(cfg), seed=0, device="cpu",
                    manifest_path=tiny_run / "results/data/dataset.json", init_checkpoint=parent,
                    out_checkpoint=tmp_path / "out.pt", out_csv=tmp_path / "out.csv", workdir=tmp_path / "work")
