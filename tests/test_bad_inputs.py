"""Bad datasets, configs, checkpoints and command lines through the real entry points: snakemake,
run the way a user runs it (from a copy of the repository layout, config/config.yaml present,
several --configfile), and the CLI steps. Each ends with a non-zero exit and ONE line naming the
file (and line or key), no traceback, and nothing in results/ changes (sha256 of every file).

The fault tests (failed rerun, corruption, full disk) are in test_reliability_faults.py."""
import os
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
from pipeline_lib.torchfile import CHECKSUM_KEY, save_sealed

from conftest import REPO, SNAKEMAKE, corrupt_tensor_bytes, one_error_line, snapshot

pytestmark = pytest.mark.e2e

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training

LABEL = "0 0.5 0.5 0.2 0.2\n"
CASE = "config/case.yaml"  # the user's own config file, given last


def _yolo_dataset(root: Path) -> None:
    for split in ("train", "val"):
        for folder in ("images", "labels"):
            (root / "data" / folder / split).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (48, 40), (k * 90, 60, 20)).save(root / f"data/images/{split}/{k}.png")
            (root / f"data/labels/{split}/{k}.txt").write_text(LABEL)
    (root / "data/data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b]\n")


def repo_layout(root: Path) -> Path:
    """The repository as a user has it: Snakefile, workflow/ and config/ with config/config.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", root)
    shutil.copytree(REPO / "workflow", root / "workflow")
    shutil.copytree(REPO / "config", root / "config")
    return root


@pytest.fixture(scope="session")  # its cases are spread over the workers (conftest.SPREAD)
def valid(tmp_path_factory) -> Path:
    """A valid dataset, configs, manifest and checkpoint; every case starts from a copy (relative
    paths, so the copy points into itself)."""
    root = repo_layout(tmp_path_factory.mktemp("valid") / "repo")
    _yolo_dataset(root)
    cfg = yaml.safe_load((REPO / "config/test.yaml").read_text())
    cfg["dataset"] = {"path": "data/data.yaml"}
    (root / "config/test.yaml").write_text(yaml.safe_dump(cfg))
    (root / CASE).write_text("seed: 0\n")  # an empty file is not a config for snakemake
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
    return subprocess.run([sys.executable, "-m", "pipeline_lib", *args, "--config", "config/test.yaml",
                           "--config", CASE, "--results", "results"], cwd=root, capture_output=True, text=True,
                          timeout=300)


def _snakemake(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """snakemake as a user types it in the repository: targets first, then the config files."""
    return subprocess.run([SNAKEMAKE, *args, "--cores", "1", "--configfile", "config/test.yaml", CASE],
                          cwd=root, capture_output=True, text=True, timeout=300, env=env)


def PREPARE(root):
    return _cli(root, "prepare-dataset")


def EVAL(root):
    return _cli(root, "evaluate", "--stage", "baseline")


def DRY(root):
    return _snakemake(root, "results/metrics/baseline.json", "-n")


def RUN(root):  # a target whose jobs must run (the valid layout has no sparse.pt)
    return _snakemake(root, "results/metrics/sparse.json")


def _case(text: str):
    return lambda root: (root / CASE).write_text(text)


def _write(path: str, text: str | bytes):
    def setup(root: Path):
        target = root / path
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)
    return setup


def _checkpoint(mutate):
    """A well-formed, sealed checkpoint whose parts do not fit (as from another tool or by hand)."""
    def setup(root: Path):
        ckpt = torch.load(root / "results/baseline.pt", weights_only=True)
        ckpt.pop(CHECKSUM_KEY)
        mutate(ckpt)
        save_sealed(root / "results/baseline.pt", ckpt)
    return setup


def _as(key, value):
    def mutate(ckpt):
        ckpt[key] = value
    return mutate


class _Exploit:
    def __reduce__(self):
        return (print, ("this would have run code",))


def _pickle_exploit(root: Path):
    torch.save({"format": "slimflow/ckpt-v1", "payload": _Exploit()}, root / "results/baseline.pt")


def _infeasible_prune(root: Path, case: str = "prune:\n  ratio: 0.99\n  on_infeasible: error\n"):
    (root / CASE).write_text(case)
    ckpt = torch.load(root / "results/baseline.pt", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for key in [k for k in ckpt["state_dict"] if k.endswith("running_var")]:  # distinct |γ|, as after training
        gamma = ckpt["state_dict"][key.replace("running_var", "weight")]
        gamma.copy_(torch.rand(gamma.shape, generator=generator))
    ckpt.pop(CHECKSUM_KEY)
    save_sealed(root / "results/sparse.pt", ckpt)


def _no_images_folder(root: Path):
    (root / "data/images").rename(root / "data/pics")
    (root / "data/data.yaml").write_text("path: .\ntrain: pics/train\nval: pics/val\nnames: [a, b]\n")


def _yaml(names: str, extra: str = "") -> str:
    return f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n{extra}"


def _damaged_resume_state(root: Path):
    work = root / "results/work/baseline"
    work.mkdir(parents=True)
    save_sealed(work / "last.pt", {"run_id": "x", "epoch": 1, "model": YOLODetector(nc=2, scale="n").state_dict()})
    corrupt_tensor_bytes(work / "last.pt")


def _lora_targets_nowhere(root: Path):
    (root / CASE).write_text("stages:\n  finetune:\n    lora: {r: 4, targets: ['head*']}\n")
    shutil.copy(root / "results/baseline.pt", root / "results/pruned.pt")  # the parent exists: checked before any job


# config/test.yaml with a bad value that neither config/config.yaml (before it) nor config/case.yaml (after) sets last
MIDDLE = ((REPO / "config/test.yaml").read_text().replace("dataset:\n", "dataset:\n  path: data/data.yaml\n")
          .replace("  batch_size: 8\n  nominal", "  batch_size: 0\n  nominal"))
SNAKE_CFG = [DRY, PREPARE]  # config mistakes: through snakemake and through the CLI
DATA = [DRY, PREPARE]
CKPT = [DRY, EVAL]
CASES = [
    # id, setup, entry points, fragments the one line must contain
    # --- config (item 1: the file that set the value, not config/config.yaml; items 4, 6)
    ("negative epochs", _case("train:\n  epochs: -1\n"), SNAKE_CFG, [f"{CASE}:2:", "train.epochs:", "minimum"]),
    ("unknown config key", _case("train:\n  epochs: 2\n  epoch: 3\n"), SNAKE_CFG, [f"{CASE}:3:", "train.epoch: unknown key"]),
    ("wrong config type", _case("train:\n  epochs: two\n"), SNAKE_CFG, [f"{CASE}:2:", "train.epochs:", "not of type 'integer'"]),
    ("string prune ratio", _case("prune:\n  ratio: half\n"), SNAKE_CFG, [f"{CASE}:2:", "prune.ratio:"]),
    ("prune ratio 0", _case("prune:\n  ratio: 0\n"), SNAKE_CFG, [f"{CASE}:2:", "prune.ratio:"]),
    ("prune ratio 1", _case("prune:\n  ratio: 1.0\n"), SNAKE_CFG, [f"{CASE}:2:", "prune.ratio:"]),
    ("imgsz not a multiple of 32", _case("model:\n  imgsz: 100\n"), SNAKE_CFG, [f"{CASE}:2:", "model.imgsz:"]),
    ("imgsz above 4096", _case("model:\n  imgsz: 8192\n"), SNAKE_CFG, [f"{CASE}:2:", "model.imgsz:", "4096"]),
    ("negative lr0", _case("train:\n  lr0: -0.01\n"), SNAKE_CFG, [f"{CASE}:2:", "train.lr0:"]),
    ("batch size 0", _case("train:\n  batch_size: 0\n"), SNAKE_CFG, [f"{CASE}:2:", "train.batch_size:"]),
    ("unknown model", _case("model:\n  name: yolov9x\n"), SNAKE_CFG, [f"{CASE}:2:", "model.name:", "yolov9x"]),
    ("ratios for the wrong iteration count", _case("prune:\n  iterations: 2\n  ratio: [0.5]\n"), SNAKE_CFG,
     [f"{CASE}:3:", "prune.ratio:", "prune.iterations=2"]),
    ("negative seed", _case("seed: -1\n"), SNAKE_CFG, [f"{CASE}:1:", "seed:", "minimum"]),
    ("seed beyond 2^32", _case(f"seed: {2**70}\n"), SNAKE_CFG, [f"{CASE}:1:", "seed:", "maximum"]),
    ("anchor row with an odd count", _case("model:\n  anchors:\n    - [10, 13, 16]\n    - [30, 61]\n    - [62, 45]\n"),
     SNAKE_CFG, [f"{CASE}:3:", "model.anchors.0:", "even"]),
    ("anchor rows of different lengths", _case("model:\n  anchors:\n    - [10, 13]\n    - [30, 61, 62, 45]\n    - [1, 2]\n"),
     SNAKE_CFG, [f"{CASE}:4:", "model.anchors.1:", "same number"]),
    ("duplicated config key", _case("train:\n  epochs: 2\n  epochs: 3\n"), SNAKE_CFG, [f"{CASE}:3:", "'epochs' given twice"]),
    ("sweep ratios that share a folder", _case("prune:\n  sweep: [0.5, 0.5000000001]\n"), SNAKE_CFG,
     [f"{CASE}:2:", "prune.sweep.1:", "sweep/r0.5/"]),
    ("the middle config file wins", _write("config/test.yaml", MIDDLE), SNAKE_CFG,
     [f"config/test.yaml:{MIDDLE.splitlines().index('  batch_size: 0') + 1}:", "train.batch_size:"]),
    ("LoRA rank 0", _case("stages:\n  finetune:\n    lora:\n      r: 0\n"), SNAKE_CFG,
     [f"{CASE}:4:", "stages.finetune.lora.r:", "minimum"]),
    ("LoRA on the sparse stage with frozen BN", _case("stages:\n  sparse:\n    lora: {r: 4}\n"), SNAKE_CFG,
     [f"{CASE}:3:", "stages.sparse.lora:", "train_bn: true"]),
    ("LoRA targets that match no layer of the parent", _lora_targets_nowhere, [DRY],
     ["stages.finetune.lora.targets:", "'head*' matches no Linear or Conv2d layer"]),
    ("YAML syntax error (CLI)", _case("train:\n  epochs: [2\n"), [PREPARE], [f"{CASE}:3:", "not valid YAML"]),
    # --- dataset (before any job through snakemake; item 8: ultralytics forms)
    ("malformed data.yaml", _write("data/data.yaml", "train: [images/train\nval: x\n"), DATA, ["data.yaml:", "not valid YAML"]),
    ("data.yaml without names", _write("data/data.yaml", "train: images/train\nval: images/val\n"), DATA, ["data.yaml", "names"]),
    ("duplicated data.yaml key", _write("data/data.yaml", _yaml("[a, b]", "val: images/train\n")), DATA,
     ["data.yaml:5:", "'val' given twice"]),
    ("missing split directory", lambda r: shutil.rmtree(r / "data/images/val"), DATA, ["data.yaml", "val", "does not exist"]),
    ("images without an images/ folder", _no_images_folder, DATA, ["data.yaml", "0.png", "no 'images' folder"]),
    ("names with mixed key types", _write("data/data.yaml", _yaml("{0: a, '1': b}")), DATA, ["data.yaml", "names:", "numbers"]),
    ("nc disagrees with names", _write("data/data.yaml", _yaml("[a, b]", "nc: 3\n")), DATA, ["data.yaml", "nc:", "2 classes"]),
    ("null class name", _write("data/data.yaml", _yaml("[a, null]")), DATA, ["data.yaml", "names:", "class 1 has no name"]),
    ("duplicated class names", _write("data/data.yaml", _yaml("[a, a]")), DATA, ["data.yaml", "names:", "'a' is both class 0 and class 1"]),
    ("list file naming a missing image", lambda r: ((r / "data/train.txt").write_text("./images/train/0.png\n./images/train/9.png\n"),
                                                     (r / "data/data.yaml").write_text(_yaml("[a, b]").replace("images/train", "train.txt", 1))),
     DATA, ["train.txt:2:", "no such image"]),
    ("class id >= nc", _write("data/labels/train/1.txt", LABEL + "2 0.5 0.5 0.1 0.1\n"), DATA, ["1.txt:2:", "class id 2"]),
    ("wrong column count", _write("data/labels/val/0.txt", "0 0.5 0.5 0.2\n"), DATA, ["0.txt:1:", "5 columns"]),
    ("coordinates outside [0,1]", _write("data/labels/train/0.txt", "1 1.2 0.5 0.2 0.2\n"), DATA, ["0.txt:1:", "normalized"]),
    ("zero-area box", _write("data/labels/train/0.txt", "1 0.5 0.5 0.2 0\n"), DATA, ["0.txt:1:", "zero-area"]),
    ("non-image file", _write("data/images/train/0.png", "just text"), [PREPARE], ["0.png", "unreadable image"]),
    ("corrupt image", lambda r: (r / "data/images/val/1.png").write_bytes((r / "data/images/val/1.png").read_bytes()[:60]),
     [PREPARE], ["1.png", "unreadable image"]),
    # --- checkpoints (before any job through snakemake; item 3: corruption; item 4: parts that do not fit)
    ("checkpoint of another family", _checkpoint(lambda c: c["arch"].update(family="reid")), CKPT,
     ["baseline.pt", "'reid' model", "'detection'"]),
    ("checkpoint of an unknown family", _checkpoint(lambda c: c["arch"].update(family="audio")), CKPT, ["baseline.pt", "'audio'"]),
    ("checkpoint missing keys", _checkpoint(lambda c: c.pop("arch")), CKPT, ["baseline.pt", "lacks key(s) arch"]),
    ("arch as a string", _checkpoint(_as("arch", "yolov5n")), CKPT, ["baseline.pt", "arch must be a mapping"]),
    ("yolov5m arch with yolov5n weights", _checkpoint(lambda c: c["arch"].update(name="yolov5m", kwargs={"nc": 2, "scale": "m"})),
     CKPT, ["baseline.pt", "weights do not fit", "arch"]),
    ("arch nc 80, weights nc 2", _checkpoint(lambda c: c["arch"]["kwargs"].update(nc=80)), CKPT,
     ["baseline.pt", "weights do not fit", "detect.m.0.weight"]),
    ("meta without imgsz", _checkpoint(lambda c: c["meta"].pop("imgsz")), CKPT, ["baseline.pt", "meta.imgsz"]),
    ("state_dict that is not tensors", _checkpoint(_as("state_dict", {"w": [1, 2]})), CKPT, ["baseline.pt", "state_dict"]),
    ("checkpoint for other classes", _checkpoint(lambda c: c["meta"].update(names=["x", "y"])), [EVAL],
     ["baseline.pt", "trained for 2 classes", "dataset.json"]),
    ("pickle that would run code", _pickle_exploit, CKPT, ["baseline.pt", "could run code"]),
    ("truncated checkpoint", lambda r: (r / "results/baseline.pt").write_bytes((r / "results/baseline.pt").read_bytes()[:1000]),
     CKPT, ["baseline.pt", "not a loadable checkpoint"]),
    ("random bytes inside a checkpoint's tensors", lambda r: corrupt_tensor_bytes(r / "results/baseline.pt"), CKPT,
     ["baseline.pt", "corrupted", "checksum"]),
    ("damaged resume state", _damaged_resume_state, [DRY, lambda r: _cli(r, "train", "--stage", "baseline")],
     ["work/baseline/last.pt", "corrupted", "delete it to start this stage over"]),
    ("missing checkpoint", lambda r: (r / "results/baseline.pt").unlink(), [EVAL], ["baseline.pt", "not found"]),
    ("infeasible prune ratio", _infeasible_prune, [lambda r: _cli(r, "prune")], ["largest feasible ratio"]),
    ("unreachable prune target", lambda r: _infeasible_prune(r, "prune:\n  target: {flops: 0.001}\n"),
     [lambda r: _cli(r, "prune")], ["prune.target: flops 0.001 is not reachable", "reaches flops 0."]),
    # --- command line and environment
    ("train --stage foo", lambda r: None, [lambda r: _cli(r, "train", "--stage", "foo")], ["--stage", "invalid choice: 'foo'"]),
    ("evaluate --stage outside results/", lambda r: None, [lambda r: _cli(r, "evaluate", "--stage", "../../escape")],
     ["--stage", "'../../escape' is not an artifact under results/"]),
    ("evaluate before prepare-dataset", lambda r: (r / "results/data/dataset.json").unlink(), [EVAL],
     ["results/data/dataset.json: not found", "prepare-dataset"]),
]
if not torch.cuda.is_available():  # this machine has no GPU: a config that asks for one
    CASES.append(("device cuda without a GPU", _case("device: cuda\n"), [EVAL, RUN], ["device: cuda", "no usable CUDA"]))


def _fresh_copy(valid: Path, tmp_path: Path) -> Path:
    """A copy of the valid layout; its manifest still lists the original's images, which stay
    valid (the cases that change the dataset read it again)."""
    root = tmp_path / "repo"
    shutil.copytree(valid, root)
    return root


@pytest.mark.parametrize("setup, runners, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line_and_keeps_results(valid, tmp_path, setup, runners, fragments):
    for n, run in enumerate(runners):
        root = _fresh_copy(valid, tmp_path / str(n))
        setup(root)
        before = snapshot(root / "results")
        line = one_error_line(run(root))
        for fragment in fragments:
            assert fragment in line, (run.__name__, line)
        assert snapshot(root / "results") == before, run.__name__
        assert not list(tmp_path.rglob("escape*"))


def test_empty_label_file_is_a_valid_background_image(valid, tmp_path):
    root = _fresh_copy(valid, tmp_path)
    (root / "data/labels/train/1.txt").write_text("")
    proc = _cli(root, "prepare-dataset")
    assert proc.returncode == 0, proc.stderr
    manifest = yaml.safe_load((root / "results/data/dataset.json").read_text())
    assert manifest["counts"]["train"] == {"images": 2, "boxes": 1}


@pytest.mark.parametrize("data_yaml, train_images", [
    (_yaml("{0: a, 1: b}"), 2),                                         # names as {id: name}
    (_yaml("{'0': a, '1': b}", "nc: 2\n"), 2),                          # string ids, as ultralytics reads them
    (_yaml("[a, b]").replace("images/train", "train.txt", 1), 2),       # a list file (./ relative to it)
    (_yaml("[a, b]").replace("images/train", "[images/train, images/val]", 1), 4),  # a list of folders
])
def test_ultralytics_data_yaml_forms_are_accepted(valid, tmp_path, data_yaml, train_images):
    root = _fresh_copy(valid, tmp_path)
    (root / "data/train.txt").write_text("./images/train/0.png\nimages/train/1.png\n")
    (root / "data/data.yaml").write_text(data_yaml)
    for proc in (_cli(root, "prepare-dataset"), DRY(root)):
        assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = yaml.safe_load((root / "results/data/dataset.json").read_text())
    assert manifest["names"] == ["a", "b"] and manifest["counts"]["train"]["images"] == train_images


def test_preflight_cache_remembers_what_passed_and_sees_an_edit(valid, tmp_path):
    root = _fresh_copy(valid, tmp_path)
    assert DRY(root).returncode == 0
    cache = yaml.safe_load((root / ".snakemake/slimflow/preflight.json").read_text())
    label = root / "data/labels/train/0.txt"
    assert str(label.resolve()) in cache["dataset:"]["files"] and "results/baseline.pt" in cache["checkpoints"]
    label.write_text("0 0.5 0.5 0.2\n")  # edited after a passed check
    assert "0.txt:1:" in one_error_line(DRY(root))


def test_an_unchanged_run_is_checked_and_scheduled_without_torch(valid, tmp_path):
    """Once the preflight has passed a checkpoint, parsing the workflow (config validation, the
    dataset's check, the evaluator lookup) needs no torch: a second dry run works with an
    importable `torch` that refuses to load. The first one checked the checkpoint with the real one."""
    root = _fresh_copy(valid, tmp_path)
    assert DRY(root).returncode == 0
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch imported while snakemake parsed the workflow')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}
    proc = _snakemake(root, "results/metrics/baseline.json", "-n", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
    (root / "data/labels/train/0.txt").write_text("0 0.5 0.5 0.2\n")  # the dataset check itself runs without torch
    assert "0.txt:1:" in one_error_line(_snakemake(root, "results/metrics/baseline.json", "-n", env=env))
    (root / CASE).write_text("model:\n  anchors:\n    - [10, 13, 16]\n    - [30, 61]\n    - [62, 45]\n")
    assert "model.anchors.0:" in one_error_line(_snakemake(root, "results/metrics/baseline.json", "-n", env=env))


def test_market1501_name_that_does_not_parse_fails_naming_the_file(tmp_path):
    from pipeline_lib.tasks.reid.synthetic import generate_market

    market = generate_market(tmp_path / "market", n_train_ids=4, n_test_ids=3, height=64, seed=0)
    first = sorted((market / "bounding_box_train").glob("*.jpg"))[0]
    bad = first.with_name("person_7.jpg")
    first.rename(bad)
    root = repo_layout(tmp_path / "repo")
    cfg = yaml.safe_load((REPO / "config/test_reid.yaml").read_text())
    cfg["dataset"] = {"path": str(market)}
    for name in ("config/config.yaml", "config/test.yaml"):  # a ReID user's defaults (detection keys would not validate)
        (root / name).write_text(yaml.safe_dump(cfg))
    (root / CASE).write_text("seed: 0\n")
    for run in (PREPARE, DRY):
        line = one_error_line(run(root))
        assert str(bad) in line
        assert not (root / "results").exists() or list((root / "results").rglob("*.json")) == []
