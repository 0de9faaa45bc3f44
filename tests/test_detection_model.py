"""YOLOv5-style detector, loss and NMS: ``pytest -q tests/test_detection_model.py``."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp

from pipeline_lib.tasks.detection.loss import DetectionLoss
from pipeline_lib.tasks.detection.model import ACTIVATIONS, Conv, YOLODetector, postprocess

NC = 3


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def model_n() -> YOLODetector:
    torch.manual_seed(0)
    return YOLODetector(NC, "n")


@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("hw", [(64, 64), (96, 128)])
def test_output_shapes(scale, hw):
    model = YOLODetector(NC, scale)
    x = torch.randn(2, 3, *hw)
    levels = [(hw[0] // s, hw[1] // s) for s in (8, 16, 32)]
    with torch.no_grad():
        raw = model.train()(x)
        assert [tuple(r.shape) for r in raw] == [(2, 3, h, w, 5 + NC) for h, w in levels]
        decoded = model.eval()(x)
    assert decoded.shape == (2, sum(3 * h * w for h, w in levels), 5 + NC)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    # Centres lie within half a cell-stride margin of the image (input pixels), scores are probabilities.
    cx, cy = decoded[..., 0], decoded[..., 1]
    assert cx.min() > -16 and cx.max() < hw[1] + 16 and cy.min() > -16 and cy.max() < hw[0] + 16
    assert (decoded[..., 2:4] > 0).all() and decoded[..., 4:].min() >= 0 and decoded[..., 4:].max() <= 1


@pytest.mark.parametrize(("scale", "expected"), [("n", 1_872_157), ("s", 7_235_389)])
def test_param_count_matches_yolov5(scale, expected):
    assert n_params(YOLODetector(80, scale)) == pytest.approx(expected, rel=0.05)


def test_loss_decreases_on_fixed_batch():
    torch.manual_seed(0)
    model = YOLODetector(NC, "n").train()
    x = torch.rand(2, 3, 64, 64)
    targets = torch.tensor(
        [[0, 0, 0.30, 0.40, 0.25, 0.30], [0, 2, 0.70, 0.60, 0.40, 0.20], [1, 1, 0.50, 0.50, 0.60, 0.70]]
    )
    criterion = DetectionLoss(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, items = criterion(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(items) == {"box", "obj", "cls"}
    assert losses[-1] < 0.5 * losses[0]


def test_loss_with_empty_targets(model_n):
    model_n.train()
    loss, items = DetectionLoss(model_n)(model_n(torch.rand(2, 3, 64, 64)), torch.zeros(0, 6))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert items["box"] == 0.0 and items["cls"] == 0.0


def _decoded(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows)[None]  # (1, N, 5+nc) with nc=2: cx, cy, w, h, obj, p0, p1


def test_postprocess_nms_is_class_aware():
    same = postprocess(_decoded([[50, 50, 20, 20, 0.9, 0.9, 0.1], [52, 51, 20, 20, 0.8, 0.9, 0.1]]))[0]
    assert same.shape == (1, 6)
    assert same[0].tolist() == pytest.approx([40, 40, 60, 60, 0.81, 0])
    different = postprocess(_decoded([[50, 50, 20, 20, 0.9, 0.9, 0.1], [52, 51, 20, 20, 0.8, 0.1, 0.9]]))[0]
    assert sorted(different[:, 5].tolist()) == [0, 1]


def test_postprocess_conf_threshold_and_max_det():
    rows = [[50, 50, 20, 20, 0.9, 0.9, 0.1], [10, 10, 8, 8, 0.05, 0.9, 0.1], [90, 90, 8, 8, 0.6, 0.2, 0.8]]
    assert postprocess(_decoded(rows), conf_thres=0.25)[0][:, 4].tolist() == pytest.approx([0.81, 0.48])
    assert len(postprocess(_decoded(rows), max_det=1)[0]) == 1
    assert len(postprocess(_decoded(rows), multi_label=True)[0]) == 6
    assert postprocess(torch.zeros(2, 0, 7))[1].shape == (0, 6)


@pytest.mark.parametrize("shortcut", [True, False])
def test_dependency_graph_and_keep_width(shortcut):
    model = YOLODetector(NC, "n", shortcut=shortcut)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 64, 64))
    assert len(list(dg.get_all_groups(root_module_types=[torch.nn.Conv2d]))) > 0
    keep = model.keep_width_modules()
    assert len(keep) == 3 and all(m.out_channels == 3 * (5 + NC) for m in keep)


def test_eval_is_batch_independent_and_exportable(model_n):
    model_n.eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        both = model_n(x)
        assert torch.allclose(both[:1], model_n(x[:1]), atol=1e-5)
        assert torch.allclose(both[1:], model_n(x[1:]), atol=1e-5)
    batch = torch.export.Dim("batch", min=1, max=16)
    exported = torch.export.export(model_n, (x,), dynamic_shapes={"x": {0: batch}})
    x3 = torch.rand(3, 3, 64, 96)
    assert torch.allclose(exported.module()(x3), model_n(x3), atol=1e-5)


def test_decode_is_yolov5s_formula_at_every_level(model_n):
    x = torch.rand(2, 3, 64, 96)
    detect = model_n.eval().detect
    with torch.no_grad():
        detect.train()  # raw level outputs, BN still in eval mode
        raw = model_n(x)
        detect.eval()
        decoded = model_n(x)
    expected = []
    for i, r in enumerate(raw):  # YOLOv5 v6: xy = (2 sig - 0.5 + cell) * stride, wh = (2 sig)^2 * anchor
        _, na, ny, nx, no = r.shape
        gy, gx = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
        cell = torch.stack((gx, gy), -1).view(1, 1, ny, nx, 2)
        anchor = (detect.anchors[i] * detect.stride[i]).view(1, na, 1, 1, 2)
        s = r.sigmoid()
        xy = (2 * s[..., :2] - 0.5 + cell) * detect.stride[i]
        wh = (2 * s[..., 2:4]) ** 2 * anchor
        expected.append(torch.cat((xy, wh, s[..., 4:]), -1).view(2, -1, no))
    torch.testing.assert_close(decoded, torch.cat(expected, 1))


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_act_sets_the_activation_of_every_conv(act):
    model = YOLODetector(NC, "n", act=act)
    kinds = {type(m.act) for m in model.modules() if isinstance(m, Conv)}
    assert kinds == {type(ACTIVATIONS[act]())}


def test_unknown_act_is_rejected():
    with pytest.raises(ValueError, match="act='gelu'"):
        YOLODetector(NC, "n", act="gelu")
