"""What the bad-input suites share (tests/test_bad_inputs.py: configs, checkpoints, command lines;
tests/test_bad_datasets.py: datasets): a copy of the repository layout as a user has it, the
entry points run the way a user runs them, and the check every case ends with: exit ≠ 0, ONE line
with the expected fragments, no traceback, and nothing in results/ changes (sha256 of every file)."""
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

from pipeline_lib.checkpoint import save_checkpoint
from pipeline_lib.tasks.detection.model import YOLODetector

from conftest import REPO, SNAKEMAKE, one_error_line, snapshot

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


def family_layout(root: Path, cfg: dict) -> Path:
    """The layout for a user of another family: its config as config/config.yaml and config/test.yaml
    (detection's keys would not validate), and an empty config/case.yaml."""
    repo_layout(root)
    for name in ("config/config.yaml", "config/test.yaml"):
        (root / name).write_text(yaml.safe_dump(cfg))
    (root / CASE).write_text("seed: 0\n")  # an empty file is not a config for snakemake
    return root


def valid_layout(root: Path) -> Path:
    """A valid detection dataset, configs, manifest and checkpoint; every case starts from a copy
    (relative paths, so the copy points into itself)."""
    repo_layout(root)
    _yolo_dataset(root)
    cfg = yaml.safe_load((REPO / "config/test.yaml").read_text())
    cfg["dataset"] = {"path": "data/data.yaml"}
    (root / "config/test.yaml").write_text(yaml.safe_dump(cfg))
    (root / CASE).write_text("seed: 0\n")
    ok = cli(root, "prepare-dataset")
    assert ok.returncode == 0, ok.stderr
    model = YOLODetector(nc=2, scale="n")
    save_checkpoint(root / "results/baseline.pt", model, {"family": "detection", "name": "yolov5n",
                    "kwargs": {"nc": 2, "scale": "n"}}, {"stage": "baseline", "imgsz": 64, "names": ["a", "b"],
                                                          "seed": 0, "dataset": "x"})
    (root / "results/metrics").mkdir()
    (root / "results/metrics/baseline.json").write_text("{}")  # a previous result that must survive
    return root


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_lib", *args, "--config", "config/test.yaml",
                           "--config", CASE, "--results", "results"], cwd=root, capture_output=True, text=True,
                          timeout=300)


def snakemake(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """snakemake as a user types it in the repository: targets first, then the config files."""
    return subprocess.run([SNAKEMAKE, *args, "--cores", "1", "--configfile", "config/test.yaml", CASE],
                          cwd=root, capture_output=True, text=True, timeout=300, env=env)


def SLIMFLOW_RUN(root):
    """`python -m pipeline_lib run` (`slimflow run`): snakemake after a strict read of every config file."""
    return subprocess.run([sys.executable, "-m", "pipeline_lib", "run", "results/metrics/baseline.json", "-n",
                           "--cores", "1", "--configfile", "config/test.yaml", CASE], cwd=root, capture_output=True,
                          text=True, timeout=300)


def PLAIN_DRY(root):
    """snakemake without --configfile: config/config.yaml is the experiment."""
    return subprocess.run([SNAKEMAKE, "results/metrics/baseline.json", "-n", "--cores", "1"], cwd=root,
                          capture_output=True, text=True, timeout=300)


def PREPARE(root):
    return cli(root, "prepare-dataset")


def EVAL(root):
    return cli(root, "evaluate", "--stage", "baseline")


def DRY(root):
    return snakemake(root, "results/metrics/baseline.json", "-n")


def RUN(root):  # a target whose jobs must run (the valid layouts have no sparse.pt)
    return snakemake(root, "results/metrics/sparse.json")


def case(text: str):
    return lambda root: (root / CASE).write_text(text)


def write(path: str, text: str | bytes):
    def setup(root: Path):
        target = root / path
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)
    return setup


def fresh_copy(valid: Path, tmp_path: Path) -> Path:
    """A copy of a valid layout; its manifest still lists the original's images, which stay valid
    (the cases that change the dataset read it again)."""
    root = tmp_path / "repo"
    shutil.copytree(valid, root)
    return root


def fails_in_one_line_and_keeps_results(valid: Path, tmp_path: Path, setup, runners, fragments) -> None:
    """Each runner, on a fresh copy of `valid` changed by `setup`: one line with every fragment, results/ unchanged."""
    for n, run in enumerate(runners):
        root = fresh_copy(valid, tmp_path / str(n))
        setup(root)
        before = snapshot(root / "results")
        line = one_error_line(run(root))
        for fragment in fragments:
            assert fragment in line, (run.__name__, line)
        assert snapshot(root / "results") == before, run.__name__
        assert not list(tmp_path.rglob("escape*"))
