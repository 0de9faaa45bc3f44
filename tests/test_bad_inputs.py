"""Bad datasets, configs and checkpoints through the real entry points (the CLI steps and
snakemake): each ends with a non-zero exit and ONE line naming the file, line or key, no
traceback, and nothing already in results/ changes."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from pipeline_lib.checkpoint import save_checkpoint
from pipeline_lib.tasks.detection.model import YOLODetector

from conftest import REPO, snakemake_cmd

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

LABEL = "0 0.5 0.5 0.2 0.2\n"


def _yolo_dataset(root: Path) -> None:
    for split in ("train", "val"):
        for folder in ("images", "labels"):
            (root / "data" / folder / split).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (48, 40), (k * 90, 60, 20)).save(root / f"data/images/{split}/{k}.png")
            (root / f"data/labels/{split}/{k}.txt").write_text(LABEL)
    (root / "data/data.yaml").write_text(yaml.safe_dump(
        {"path": str(root / "data"), "train": "images/train", "val": "images/val", "names": ["a", "b"]}))


def _config(root: Path, **sections) -> Path:
    cfg = yaml.safe_load((REPO / "config/test.yaml").read_text())
    cfg["dataset"] = {"path": str(root / "data/data.yaml")}
    cfg.update(sections)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root / "config.yaml"


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    """A valid dataset, config, manifest and checkpoint; every case starts from a copy."""
    root = tmp_path_factory.mktemp("valid")
    _yolo_dataset(root)
    _config(root)
    ok = _cli(root, "prepare-dataset")
    assert ok.returncode == 0, ok.stderr
    model = YOLODetector(nc=2, scale="n")
    save_checkpoint(root / "results/baseline.pt", model, {"family": "detection", "name": "yolov5n",
                    "kwargs": {"nc": 2, "scale": "n"}}, {"stage": "baseline", "imgsz": 64, "names": ["a", "b"],
                                                          "seed": 0, "dataset": "x"})
    (root / "results/metrics").mkdir()
    (root / "results/metrics/baseline.json").write_text("{}")  # a previous result that must survive
    return root


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_lib", *args, "--config", str(root / "config.yaml"),
                           "--results", str(root / "results")], cwd=root, capture_output=True, text=True, timeout=300)


def _snakemake_dry(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(root, root / "config.yaml", "-n"), capture_output=True, text=True, timeout=300)


def _evaluate(root):
    return _cli(root, "evaluate", "--stage", "baseline")


def _write(path: str, text: str | bytes):
    def setup(root: Path):
        target = root / path
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)
    return setup


def _config_with(**sections):
    return lambda root: _config(root, **sections)


def _checkpoint(mutate):
    def setup(root: Path):
        ckpt = torch.load(root / "results/baseline.pt", weights_only=True)
        mutate(ckpt)
        torch.save(ckpt, root / "results/baseline.pt")
    return setup


class _Exploit:
    def __reduce__(self):
        return (print, ("this would have run code",))


def _pickle_exploit(root: Path):
    torch.save({"format": "slimflow/ckpt-v1", "payload": _Exploit()}, root / "results/baseline.pt")


def _infeasible_prune(root: Path):
    _config(root, prune={"ratio": 0.99, "on_infeasible": "error"})
    ckpt = torch.load(root / "results/baseline.pt", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for key in [k for k in ckpt["state_dict"] if k.endswith("running_var")]:  # distinct |γ|, as after training
        gamma = ckpt["state_dict"][key.replace("running_var", "weight")]
        gamma.copy_(torch.rand(gamma.shape, generator=generator))
    torch.save(ckpt, root / "results/sparse.pt")


PREPARE, DRY, EVAL = (lambda r: _cli(r, "prepare-dataset")), _snakemake_dry, _evaluate
CASES = [
    # id, setup, run, fragments the one line must contain
    ("malformed data.yaml", _write("data/data.yaml", "train: [images/train\nval: x\n"), PREPARE, ["data.yaml:", "not valid YAML"]),
    ("data.yaml without names", _write("data/data.yaml", "train: images/train\nval: images/val\n"), PREPARE, ["data.yaml", "names"]),
    ("missing split directory", lambda r: shutil.rmtree(r / "data/images/val"), PREPARE, ["data.yaml", "val", "does not exist"]),
    ("class id >= nc", _write("data/labels/train/1.txt", LABEL + "2 0.5 0.5 0.1 0.1\n"), PREPARE, ["1.txt:2:", "class id 2"]),
    ("wrong column count", _write("data/labels/val/0.txt", "0 0.5 0.5 0.2\n"), PREPARE, ["0.txt:1:", "5 columns"]),
    ("coordinates outside [0,1]", _write("data/labels/train/0.txt", "1 1.2 0.5 0.2 0.2\n"), PREPARE, ["0.txt:1:", "normalized"]),
    ("zero-area box", _write("data/labels/train/0.txt", "1 0.5 0.5 0.2 0\n"), PREPARE, ["0.txt:1:", "zero-area"]),
    ("non-image file", _write("data/images/train/0.png", "just text"), PREPARE, ["0.png", "unreadable image"]),
    ("corrupt image", lambda r: (r / "data/images/val/1.png").write_bytes((r / "data/images/val/1.png").read_bytes()[:60]),
     PREPARE, ["1.png", "unreadable image"]),
    ("unknown config key", _config_with(train={"epochs": 2, "epoch": 3}), DRY, ["config.yaml:", "train.epoch: unknown key"]),
    ("wrong config type", _config_with(train={"epochs": "two"}), DRY, ["train.epochs:", "not of type 'integer'"]),
    ("negative epochs", _config_with(train={"epochs": -1}), DRY, ["train.epochs:", "minimum"]),
    ("prune ratio 0", _config_with(prune={"ratio": 0}), DRY, ["prune.ratio:"]),
    ("prune ratio 1", _config_with(prune={"ratio": 1.0}), DRY, ["prune.ratio:"]),
    ("unknown model", _config_with(model={"name": "yolov9x"}), DRY, ["model.name:", "yolov9x"]),
    ("ratios for the wrong iteration count", _config_with(prune={"iterations": 2, "ratio": [0.5]}), DRY,
     ["prune.ratio:", "prune.iterations=2"]),
    ("infeasible prune ratio", _infeasible_prune, lambda r: _cli(r, "prune"), ["largest feasible ratio"]),
    ("checkpoint of another family", _checkpoint(lambda c: c["arch"].update(family="reid")), EVAL,
     ["baseline.pt", "'reid' model", "'detection'"]),
    ("checkpoint missing keys", _checkpoint(lambda c: c.pop("arch")), EVAL, ["baseline.pt", "lacks key(s) arch"]),
    ("pickle that would run code", _pickle_exploit, EVAL, ["baseline.pt", "could run code"]),
    ("truncated checkpoint", lambda r: (r / "results/baseline.pt").write_bytes((r / "results/baseline.pt").read_bytes()[:1000]),
     EVAL, ["baseline.pt", "not a loadable checkpoint"]),
    ("missing checkpoint", lambda r: (r / "results/baseline.pt").unlink(), EVAL, ["baseline.pt", "not found"]),
]


def _snapshot(results: Path) -> dict[str, str]:
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file() and p.name != "baseline.pt"}


@pytest.mark.parametrize("setup, run, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line_and_keeps_results(valid, tmp_path, setup, run, fragments):
    root = tmp_path / "case"
    shutil.copytree(valid, root)
    for path in (root / "config.yaml", root / "data/data.yaml"):  # the copies point into the copy
        path.write_text(path.read_text().replace(str(valid), str(root)))
    if run is not PREPARE:  # the manifest must describe the copied dataset
        assert _cli(root, "prepare-dataset").returncode == 0
    setup(root)
    before = _snapshot(root / "results")
    proc = run(root)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "this would have run code" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("slimflow error:", "slimflow config error:"))]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0]
    assert _snapshot(root / "results") == before


def test_empty_label_file_is_a_valid_background_image(valid, tmp_path):
    root = tmp_path / "case"
    shutil.copytree(valid, root)
    for path in (root / "config.yaml", root / "data/data.yaml"):
        path.write_text(path.read_text().replace(str(valid), str(root)))
    (root / "data/labels/train/1.txt").write_text("")
    proc = _cli(root, "prepare-dataset")
    assert proc.returncode == 0, proc.stderr
    manifest = yaml.safe_load((root / "results/data/dataset.json").read_text())
    assert manifest["counts"]["train"] == {"images": 2, "boxes": 1}


def test_market1501_name_that_does_not_parse_fails_naming_the_file(tmp_path):
    from pipeline_lib.tasks.reid.synthetic import generate_market

    market = generate_market(tmp_path / "market", n_train_ids=4, n_test_ids=3, height=64, seed=0)
    first = sorted((market / "bounding_box_train").glob("*.jpg"))[0]
    bad = first.with_name("person_7.jpg")
    first.rename(bad)
    cfg = yaml.safe_load((REPO / "config/test_reid.yaml").read_text())
    cfg["dataset"] = {"path": str(market)}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "results").mkdir()
    proc = _cli(tmp_path, "prepare-dataset")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("slimflow error:")]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert list((tmp_path / "results").iterdir()) == []
