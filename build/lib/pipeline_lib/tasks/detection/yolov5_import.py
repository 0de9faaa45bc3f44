"""YOLOv5 v6/v7 checkpoints (models.yolo.DetectionModel pickles) mapped onto YOLODetector.

    imported = import_detection(TASK, Path("best.pt"), model_cfg, manifest)   # see pipeline_lib.weights

The file is read by `pipeline_lib.weights.read_torch_pickle` (nothing in it runs). Our detector
is YOLOv5 v6.0's layout written as named modules, so the mapping is a renaming of layer indices
(`model.4.cv1.conv.weight` -> `stage3.1.cv1.conv.weight`) after checking, layer by layer, that the
recorded network has that layout: module types, `f` (which earlier layers feed each one), the
activation, BN eps, strides, and in the end every tensor's shape. Depth and width multiples come
from the recorded yaml, anchors from Detect's buffer, class names from `names`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...errors import UserError
from ...weights import Imported, read_torch_pickle, record_state_dict, slimflow_checkpoint, transfer
from .model import SCALES, STRIDES

__all__ = ["import_detection", "read_yolov5", "LAYOUT"]

# The packages YOLOv5's classes live in: the repository (models.yolo) and its PyPI packaging.
RECORD_PREFIXES = ("models.common.", "models.yolo.", "models.experimental.", "yolov5.models.common.",
                   "yolov5.models.yolo.", "yolov5.models.experimental.")
_MODEL_CLASSES = ("DetectionModel", "Model")  # v6.2+ and v6.0/v6.1 names of the same class

# yolov5{n,s,m,l,x}.yaml v6.0+: (layer type, its `f`, our module). Concat and Upsample hold no weights.
LAYOUT: list[tuple[str, Any, str | None]] = [
    ("Conv", -1, "stem"), ("Conv", -1, "stage2.0"), ("C3", -1, "stage2.1"), ("Conv", -1, "stage3.0"),
    ("C3", -1, "stage3.1"), ("Conv", -1, "stage4.0"), ("C3", -1, "stage4.1"), ("Conv", -1, "stage5.0"),
    ("C3", -1, "stage5.1"), ("SPPF", -1, "sppf"), ("Conv", -1, "lateral5"), ("Upsample", -1, None),
    ("Concat", [-1, 6], None), ("C3", -1, "td_p4"), ("Conv", -1, "lateral4"), ("Upsample", -1, None),
    ("Concat", [-1, 4], None), ("C3", -1, "out_p3"), ("Conv", -1, "down_p3"), ("Concat", [-1, 14], None),
    ("C3", -1, "out_p4"), ("Conv", -1, "down_p4"), ("Concat", [-1, 10], None), ("C3", -1, "out_p5"),
    ("Detect", [17, 20, 23], "detect"),
]
_ACTS = {"SiLU": "silu", "ReLU": "relu", "LeakyReLU": "leaky_relu"}
_BN_EPS = 1e-3  # YOLODetector's BN eps (YOLOv5's initialize_weights sets the same)


def _kind(record: Any) -> str:
    return record["class"].rsplit(".", 1)[-1] if isinstance(record, dict) and "class" in record else type(record).__name__


def _records(node: dict, path: str = ""):
    """Every module record under `node`, with its dotted path."""
    yield path, node
    for name, child in (node.get("_modules") or {}).items():
        if isinstance(child, dict):
            yield from _records(child, f"{path}.{name}" if path else name)


def _fail(path: Path, message: str) -> UserError:
    return UserError(f"{path}: {message}")


def _names(raw: Any, nc: int) -> list[str]:
    if isinstance(raw, dict):  # YOLOv5 >= v6.2 keeps {0: 'person', ...}
        raw = [raw[k] for k in sorted(raw, key=lambda k: int(k))]
    if isinstance(raw, (list, tuple)) and len(raw) == nc:
        return [str(n) for n in raw]
    return [f"class{i}" for i in range(nc)]


def read_yolov5(path: Path) -> tuple[dict, dict[str, torch.Tensor], list[str], int | None, str]:
    """(arch kwargs, state_dict in our names, class names, trained imgsz, description) of a YOLOv5 file."""
    tree = read_torch_pickle(path, RECORD_PREFIXES)
    if not (isinstance(tree, dict) and isinstance(tree.get("model"), dict)):
        raise _fail(path, "not a YOLOv5 checkpoint (expected a mapping with a 'model' entry, as YOLOv5's train.py "
                          "saves); for a plain state dict, see docs/WEIGHTS.md")
    use_ema = isinstance(tree.get("ema"), dict)  # YOLOv5 itself loads the EMA weights when present
    net = tree["ema"] if use_ema else tree["model"]
    cls = net.get("class", "?")
    if cls.rsplit(".", 1)[-1] not in _MODEL_CLASSES:
        raise _fail(path, f"its model is a {cls}; slimflow imports YOLOv5 detection models (DetectionModel)")
    seq = (net.get("_modules") or {}).get("model")
    layers = _layers(path, seq)
    anchors, stride = _detect_head(path, layers[-1])
    yaml_cfg = net.get("yaml") if isinstance(net.get("yaml"), dict) else {}
    gd, gw = yaml_cfg.get("depth_multiple"), yaml_cfg.get("width_multiple")
    if not (isinstance(gd, (int, float)) and isinstance(gw, (int, float))):
        raise _fail(path, "its model has no yaml with depth_multiple and width_multiple (not a YOLOv5 model)")
    nc = int(layers[-1].get("nc", net.get("nc", 0)))
    # Backbone bottlenecks add their input unless the yaml turned shortcuts off; all four C3 agree.
    shortcut = bool(layers[2]["_modules"]["m"]["_modules"]["0"].get("add", True))
    scale = next((k for k, v in SCALES.items() if v == (gd, gw)), None)
    kwargs = {"nc": nc, "scale": scale or "l", "anchors": (anchors.float() * stride.float().view(-1, 1, 1)).view(
        len(STRIDES), -1).tolist(), "shortcut": shortcut, "act": _activation(path, seq)}
    if scale is None:  # yolov5x and custom multiples
        kwargs.update(depth_multiple=float(gd), width_multiple=float(gw))
    state = {}
    for layer, (_, _, ours) in zip(layers, LAYOUT):
        if ours is not None:
            state.update(record_state_dict(layer, f"{ours}."))
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state.values() if t.is_floating_point()})
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    source = f"YOLOv5 {cls.rsplit('.', 1)[-1]} ({'ema' if use_ema else 'model'}, {'/'.join(dtypes)}, " \
             f"depth {gd} width {gw}, {kwargs['act']}, nc {nc})"
    return kwargs, state, _names(net.get("names"), nc), _trained_imgsz(tree), source


def _layers(path: Path, seq: dict | None) -> list:
    """The model's layer records, checked against YOLOv5 v6/v7's P5 layout."""
    layers = [(seq.get("_modules") or {}).get(str(i)) for i in range(len(seq.get("_modules") or {}))] if seq else []
    if len(layers) != len(LAYOUT):
        raise _fail(path, f"{len(layers)} layers, but slimflow's detector is YOLOv5 v6/v7's {len(LAYOUT)}-layer "
                          "P5 layout (yolov5n/s/m/l/x.yaml)")
    for i, (layer, (kind, source, _)) in enumerate(zip(layers, LAYOUT)):
        found = _kind(layer)
        if found != kind or (isinstance(layer, dict) and "f" in layer and layer["f"] != source):
            raise _fail(path, f"layer {i} is {found} (from {layer.get('f') if isinstance(layer, dict) else '?'}), "
                              f"YOLOv5 v6/v7 has {kind} (from {source}) there: slimflow's detector cannot take this "
                              "architecture (v5.0 and earlier used Focus and SPP)")
    return layers


def _activation(path: Path, seq: dict) -> str:
    """The one activation after every conv (SiLU, ReLU or LeakyReLU(0.1)); BatchNorm eps must be YOLOv5's."""
    acts, eps = set(), set()
    for where, rec in _records(seq, "model"):
        if _kind(rec) == "Conv" and isinstance((rec.get("_modules") or {}).get("act"), dict):
            act = rec["_modules"]["act"]
            name = _ACTS.get(_kind(act))
            if name is None or (name == "leaky_relu" and abs(act.get("negative_slope", 0.1) - 0.1) > 1e-9):
                raise _fail(path, f"{where}.act is {act['class']}; slimflow's detector has SiLU, ReLU or LeakyReLU(0.1)")
            acts.add(name)
        if _kind(rec) == "BatchNorm2d":
            eps.add(float(rec.get("eps", _BN_EPS)))
    if len(acts) != 1:
        raise _fail(path, f"mixes activations {sorted(acts)}; slimflow's detector uses one after every conv")
    if any(abs(e - _BN_EPS) > 1e-12 for e in eps):
        raise _fail(path, f"BatchNorm eps {sorted(eps)}; slimflow's detector uses YOLOv5's {_BN_EPS}")
    return acts.pop()


def _detect_head(path: Path, detect: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchors in strides, strides) of the Detect layer: three levels at slimflow's strides."""
    anchors = (detect.get("_buffers") or {}).get("anchors")
    stride = detect.get("stride")
    if not isinstance(anchors, torch.Tensor) or anchors.dim() != 3 or anchors.shape[0] != len(STRIDES):
        raise _fail(path, "Detect has no anchors buffer of three levels (an anchor-free or non-P5 head)")
    if not isinstance(stride, torch.Tensor) or stride.float().tolist() != [float(s) for s in STRIDES]:
        raise _fail(path, f"Detect strides {stride.tolist() if isinstance(stride, torch.Tensor) else stride}; "
                          f"slimflow's detector has {list(STRIDES)}")
    return anchors, stride


def _trained_imgsz(tree: dict) -> int | None:
    """The image size YOLOv5's train.py recorded in `opt`, when it is a multiple of 32."""
    opt = tree.get("opt") if isinstance(tree.get("opt"), dict) else {}
    imgsz = opt.get("imgsz", opt.get("img_size"))
    imgsz = imgsz[0] if isinstance(imgsz, (list, tuple)) and imgsz else imgsz
    return int(imgsz) if isinstance(imgsz, int) and not isinstance(imgsz, bool) and imgsz % 32 == 0 else None


def _arch_name(kwargs: dict) -> str:
    if "depth_multiple" in kwargs:
        return "yolov5x" if (kwargs["depth_multiple"], kwargs["width_multiple"]) == (1.33, 1.25) else "yolov5-custom"
    return f"yolov5{kwargs['scale']}"


def import_detection(task, path: Path, model_cfg: dict, manifest: dict | None) -> Imported:
    """A YOLODetector from a YOLOv5 checkpoint or a slimflow one; nc from `manifest` when given."""
    ckpt = slimflow_checkpoint(path, task.family)
    if ckpt is not None:
        kwargs, state = dict(ckpt["arch"]["kwargs"]), ckpt["state_dict"]
        names, imgsz, source = ckpt["meta"].get("names"), ckpt["meta"].get("imgsz"), "slimflow checkpoint"
    else:
        kwargs, state, names, imgsz, source = read_yolov5(path)
    if manifest is not None:
        kwargs["nc"] = manifest.get("nc", len(manifest["names"]))
    arch = {"family": task.family, "name": _arch_name(kwargs), "kwargs": kwargs}
    model = task.build_model(arch)
    report = transfer(model, state, task.keep_width_modules(model), path)
    return Imported(arch, model, report, names, imgsz, source)
