"""Initial weights the user has: YOLOv5 pickles read without running them, torchvision and HRNet state dicts."""
import os
import re
import subprocess
from copy import deepcopy

import pytest
import torch
import torchvision

from pipeline_lib.config import defaults
from pipeline_lib.errors import UserError
from pipeline_lib.tasks import get_task, load_model
from pipeline_lib.tasks.pose.model import ARCHS, HRNet
from pipeline_lib.weights import import_weights, write_imported

from conftest import randomize_bn
from yolov5_checkpoints import save_yolov5, yolov5_model

DETECTION = get_task("detection")


def _import(path, manifest=None, family="detection"):
    return import_weights(get_task(family), path, defaults(family)["model"], manifest)


@pytest.fixture(scope="module")
def yolov5n():
    return yolov5_model(seed=0)


def test_yolov5_fp32_checkpoint_reproduces_its_raw_outputs(tmp_path, yolov5n):
    path = save_yolov5(tmp_path / "best.pt", yolov5n, half=False)
    imported = _import(path)
    x = torch.rand(2, 3, 128, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = yolov5n(x)[0]  # YOLOv5's eval output: (decoded before NMS, raw levels)
        got = imported.model.eval()(x)
    assert got.shape == expected.shape == (2, 3 * (16 * 20 + 8 * 10 + 4 * 5), 85)
    assert (got - expected).abs().max().item() <= 1e-4
    assert (imported.report.transferred, imported.report.total) == (349, 349)  # as YOLOv5 counts yolov5n
    assert imported.arch["name"] == "yolov5n" and imported.arch["kwargs"]["act"] == "silu"
    assert imported.names == [f"name{i}" for i in range(80)] and imported.imgsz == 640


def test_fp16_checkpoint_loads_the_ema_as_yolov5_does(tmp_path, yolov5n):
    ema = yolov5_model(seed=5)
    imported = _import(save_yolov5(tmp_path / "best.pt", yolov5n, ema=ema, half=True))
    reference = ema.half().float().eval()  # what YOLOv5's attempt_load runs: the EMA, FP16 weights in float
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (imported.model.eval()(x) - reference(x)[0]).abs().max().item() <= 1e-4
    assert "ema, float16" in imported.source


def test_relu_model_stays_relu(tmp_path):
    model = yolov5_model(seed=3, activation="nn.ReLU()")
    imported = _import(save_yolov5(tmp_path / "relu.pt", model, half=False))
    assert imported.arch["kwargs"]["act"] == "relu"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert (imported.model.eval()(x) - model(x)[0]).abs().max().item() <= 1e-4


def test_class_count_mismatch_reinitialises_only_the_heads(tmp_path, yolov5n):
    path = save_yolov5(tmp_path / "best.pt", yolov5n, half=False)
    imported = _import(path, manifest={"names": ["a", "b", "c"], "nc": 3})
    report = imported.report
    assert (report.transferred, report.total) == (343, 349)
    assert sorted(report.reinitialised) == sorted(f"detect.m.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    assert imported.arch["kwargs"]["nc"] == 3 and imported.model.detect.m[0].out_channels == 3 * 8
    source = _import(path).model.state_dict()
    for key, tensor in imported.model.state_dict().items():
        if not key.startswith("detect.m."):
            assert torch.equal(tensor, source[key]), key
    assert re.fullmatch(r"Transferred 343/349 items from \S+; 6 start fresh .*", report.line(path))


class _Payload:
    """Pickles as a call of `func(*args)`: what a hostile checkpoint holds."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("make, named", [
    (lambda marker: _Payload(os.system, f"touch {marker}"), "posix.system"),
    (lambda marker: _Payload(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
    (lambda marker: _Payload(eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
])
def test_a_pickle_naming_any_other_global_is_refused_and_nothing_runs(tmp_path, yolov5n, make, named):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": yolov5n, "ema": None, "opt": make(marker)}, path)
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: refused: its pickle names {re.escape(named)},"):
        _import(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the usual load: the payload is live, the refusal is what kept it inert
    assert marker.exists()


def test_import_weights_writes_a_checkpoint_every_later_load_reads_with_weights_only(tmp_path, yolov5n):
    out = tmp_path / "imported.pt"
    write_imported(save_yolov5(tmp_path / "best.pt", yolov5n), out, DETECTION, defaults("detection")["model"])
    assert torch.load(out, weights_only=True)["meta"]["stage"] == "imported"
    loaded = load_model(out, family="detection")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert (loaded.model(x) - deepcopy(yolov5n).half().float()(x)[0]).abs().max().item() <= 1e-4
    again = _import(out, manifest={"names": ["a", "b"], "nc": 2})  # as model.weights: the same arch, this data's nc
    assert (again.report.transferred, again.report.total) == (343, 349)


def test_a_state_dict_is_not_taken_for_a_yolov5_checkpoint(tmp_path, yolov5n):
    path = tmp_path / "sd.pt"
    torch.save(yolov5n.state_dict(), path)
    with pytest.raises(UserError, match="not a YOLOv5 checkpoint"):
        _import(path)


def test_torchvision_resnet18_initialises_the_reid_backbone_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    resnet = randomize_bn(torchvision.models.resnet18(weights=None))
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    imported = _import(tmp_path / "resnet18.pth", manifest={"names": list("abcd"), "nc": 4}, family="reid")
    state = imported.model.state_dict()
    for key, tensor in resnet.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(state[f"backbone.{key}"], tensor), key
    assert imported.arch["name"] == "resnet18" and imported.arch["kwargs"]["num_classes"] == 4
    assert imported.report.total - imported.report.transferred == len(imported.report.reinitialised) == 6


def _official_hrnet_name(key):
    """Our HRNet key in deep-high-resolution-net.pytorch's pose_hrnet naming."""
    for ours, official in {"stem.0.0.": "conv1.", "stem.0.1.": "bn1.", "stem.1.0.": "conv2.", "stem.1.1.": "bn2."}.items():
        if key.startswith(ours):
            return official + key[len(ours):]
    if m := re.match(r"transitions\.(\d)\.(\d)\.(.*)", key):  # the new branch is a Sequential of one conv block
        return f"transition{int(m[1]) + 1}.{m[2]}.{'0.' if int(m[2]) == int(m[1]) + 1 else ''}{m[3]}"
    if m := re.match(r"stages\.(\d)\.(.*)", key):
        return f"stage{int(m[1]) + 2}.{m[2].replace('.fuse.', '.fuse_layers.')}"
    return key


def test_official_hrnet_state_dict_maps_onto_our_modules(tmp_path):
    torch.manual_seed(0)
    hrnet = randomize_bn(HRNet(num_joints=17, **ARCHS["hrnet_small"])).eval()
    official = {_official_hrnet_name(k): v for k, v in hrnet.state_dict().items()}
    assert "transition1.1.0.0.weight" in official and "stage2.0.fuse_layers.0.1.0.weight" in official
    torch.save(official, tmp_path / "pose_hrnet.pth")
    imported = _import(tmp_path / "pose_hrnet.pth", family="pose")
    assert imported.arch["name"] == "hrnet_small" and imported.report.transferred == imported.report.total
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(imported.model.eval()(x), hrnet(x))
