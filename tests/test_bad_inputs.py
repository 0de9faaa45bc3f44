"""Bad configs, checkpoints and command lines through the real entry points: snakemake, run the
way a user runs it (from a copy of the repository layout, config/config.yaml present, several
--configfile), and the CLI steps. Each ends with a non-zero exit and ONE line naming the file (and
line or key), no traceback, and nothing in results/ changes (sha256 of every file).

Bad datasets are in test_bad_datasets.py, the fault tests (failed rerun, corruption, full disk) in
test_reliability_faults.py, what they share in bad_inputs.py."""
import os
import shutil
from pathlib import Path

import pytest
import torch

from pipeline_lib.tasks.detection.model import YOLODetector
from pipeline_lib.torchfile import CHECKSUM_KEY, save_sealed

from bad_inputs import (CASE, DRY, EVAL, PLAIN_DRY, PREPARE, RUN, SLIMFLOW_RUN, case, cli, fails_in_one_line_and_keeps_results,
                        write)
from conftest import REPO, corrupt_tensor_bytes

pytestmark = pytest.mark.e2e  # runs the real snakemake, CLI or a training


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


class _SystemExploit:
    def __reduce__(self):
        return (os.system, ("touch escape_system",))


def _system_exploit(root: Path):
    torch.save({"format": "slimflow/ckpt-v1", "payload": _SystemExploit()}, root / "results/baseline.pt")


def _pickle_exploit(root: Path):
    torch.save({"format": "slimflow/ckpt-v1", "payload": _Exploit()}, root / "results/baseline.pt")


def _infeasible_prune(root: Path, text: str = "prune:\n  ratio: 0.99\n  on_infeasible: error\n"):
    (root / CASE).write_text(text)
    ckpt = torch.load(root / "results/baseline.pt", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for key in [k for k in ckpt["state_dict"] if k.endswith("running_var")]:  # distinct |γ|, as after training
        gamma = ckpt["state_dict"][key.replace("running_var", "weight")]
        gamma.copy_(torch.rand(gamma.shape, generator=generator))
    ckpt.pop(CHECKSUM_KEY)
    save_sealed(root / "results/sparse.pt", ckpt)


def _damaged_resume_state(root: Path):
    work = root / "results/work/baseline"
    work.mkdir(parents=True)
    save_sealed(work / "last.pt", {"run_id": "x", "epoch": 1, "model": YOLODetector(nc=2, scale="n").state_dict()})
    corrupt_tensor_bytes(work / "last.pt")


def _lora_targets_nowhere(root: Path):
    (root / CASE).write_text("stages:\n  finetune:\n    lora: {r: 4, targets: ['head*']}\n")
    shutil.copy(root / "results/baseline.pt", root / "results/pruned.pt")  # the parent exists: checked before any job


YTE = "__use_yte__: true\nseed: ?__import__('os').system('touch escape_yte') or 0\n"  # YTE would run the expression
# config/test.yaml with a bad value that neither config/config.yaml (before it) nor config/case.yaml (after) sets last
MIDDLE = ((REPO / "config/test.yaml").read_text().replace("dataset:\n", "dataset:\n  path: data/data.yaml\n")
          .replace("  batch_size: 8\n  nominal", "  batch_size: 0\n  nominal"))
SNAKE_CFG = [DRY, PREPARE]  # config mistakes: through snakemake and through the CLI
CKPT = [DRY, EVAL]
CASES = [
    # id, setup, entry points, fragments the one line must contain
    # --- config (item 1: the file that set the value, not config/config.yaml; items 4, 6)
    ("negative epochs", case("train:\n  epochs: -1\n"), SNAKE_CFG, [f"{CASE}:2:", "train.epochs:", "minimum"]),
    ("unknown config key", case("train:\n  epochs: 2\n  epoch: 3\n"), SNAKE_CFG, [f"{CASE}:3:", "train.epoch: unknown key"]),
    ("wrong config type", case("train:\n  epochs: two\n"), SNAKE_CFG, [f"{CASE}:2:", "train.epochs:", "not of type 'integer'"]),
    ("string prune ratio", case("prune:\n  ratio: half\n"), SNAKE_CFG, [f"{CASE}:2:", "prune.ratio:"]),
    ("prune ratio 0", case("prune:\n  ratio: 0\n"), SNAKE_CFG, [f"{CASE}:2:", "prune.ratio:"]),
    ("prune ratio 1", case("prune:\n  ratio: 1.0\n"), SNAKE_CFG, [f"{CASE}:2:", "prune.ratio:"]),
    ("imgsz not a multiple of 32", case("model:\n  imgsz: 100\n"), SNAKE_CFG, [f"{CASE}:2:", "model.imgsz:"]),
    ("imgsz above 4096", case("model:\n  imgsz: 8192\n"), SNAKE_CFG, [f"{CASE}:2:", "model.imgsz:", "4096"]),
    ("negative lr0", case("train:\n  lr0: -0.01\n"), SNAKE_CFG, [f"{CASE}:2:", "train.lr0:"]),
    ("batch size 0", case("train:\n  batch_size: 0\n"), SNAKE_CFG, [f"{CASE}:2:", "train.batch_size:"]),
    ("unknown model", case("model:\n  name: yolov9x\n"), SNAKE_CFG, [f"{CASE}:2:", "model.name:", "yolov9x"]),
    ("ratios for the wrong iteration count", case("prune:\n  iterations: 2\n  ratio: [0.5]\n"), SNAKE_CFG,
     [f"{CASE}:3:", "prune.ratio:", "prune.iterations=2"]),
    ("negative seed", case("seed: -1\n"), SNAKE_CFG, [f"{CASE}:1:", "seed:", "minimum"]),
    ("seed beyond 2^32", case(f"seed: {2**70}\n"), SNAKE_CFG, [f"{CASE}:1:", "seed:", "maximum"]),
    ("anchor row with an odd count", case("model:\n  anchors:\n    - [10, 13, 16]\n    - [30, 61]\n    - [62, 45]\n"),
     SNAKE_CFG, [f"{CASE}:3:", "model.anchors.0:", "even"]),
    ("anchor rows of different lengths", case("model:\n  anchors:\n    - [10, 13]\n    - [30, 61, 62, 45]\n    - [1, 2]\n"),
     SNAKE_CFG, [f"{CASE}:4:", "model.anchors.1:", "same number"]),
    ("duplicated config key", case("train:\n  epochs: 2\n  epochs: 3\n"), SNAKE_CFG, [f"{CASE}:3:", "'epochs' given twice"]),
    ("sweep ratios that share a folder", case("prune:\n  sweep: [0.5, 0.5000000001]\n"), SNAKE_CFG,
     [f"{CASE}:2:", "prune.sweep.1:", "sweep/r0.5/"]),
    ("the middle config file wins", write("config/test.yaml", MIDDLE), SNAKE_CFG,
     [f"config/test.yaml:{MIDDLE.splitlines().index('  batch_size: 0') + 1}:", "train.batch_size:"]),
    ("LoRA rank 0", case("stages:\n  finetune:\n    lora:\n      r: 0\n"), SNAKE_CFG,
     [f"{CASE}:4:", "stages.finetune.lora.r:", "minimum"]),
    ("LoRA on the sparse stage with frozen BN", case("stages:\n  sparse:\n    lora: {r: 4}\n"), SNAKE_CFG,
     [f"{CASE}:3:", "stages.sparse.lora:", "train_bn: true"]),
    ("LoRA targets that match no layer of the parent", _lora_targets_nowhere, [DRY],
     ["stages.finetune.lora.targets:", "'head*' matches no Linear or Conv2d layer"]),
    ("YAML syntax error", case("train:\n  epochs: [2\n"), [PREPARE, SLIMFLOW_RUN], [f"{CASE}:3:", "not valid YAML"]),
    # --- no config file runs code (issue 30, item 2): refused before Snakemake evaluates it (escape_* = code ran)
    ("YTE template in a --configfile", case(YTE), [SLIMFLOW_RUN, PREPARE], [f"{CASE}:1:", "__use_yte__", "run as code"]),
    ("YTE template in config/config.yaml", write("config/config.yaml", YTE), [PLAIN_DRY],
     ["config/config.yaml:1:", "__use_yte__"]),
    ("a python tag in a config file", case("seed: !!python/object/apply:os.system ['touch escape_tag']\n"),
     [SLIMFLOW_RUN, PREPARE], [f"{CASE}:1:", "python/object/apply:os.system", "not allowed"]),
    ("a Latin-1 config file", write(CASE, b"seed: 0\nname: caf\xe9\n"), [SLIMFLOW_RUN, PREPARE],
     [f"{CASE}:2:", "not UTF-8"]),
    ("a list at the top level", case("- seed: 0\n"), [SLIMFLOW_RUN, PREPARE], [CASE, "must be a mapping"]),
    ("tab indentation", case("train:\n\tepochs: 2\n"), [SLIMFLOW_RUN, PREPARE], [f"{CASE}:2:", "not valid YAML"]),
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
    ("pickle that would call os.system", _system_exploit, CKPT, ["baseline.pt", "could run code (posix.system)"]),
    ("truncated checkpoint", lambda r: (r / "results/baseline.pt").write_bytes((r / "results/baseline.pt").read_bytes()[:1000]),
     CKPT, ["baseline.pt", "not a loadable checkpoint"]),
    ("random bytes inside a checkpoint's tensors", lambda r: corrupt_tensor_bytes(r / "results/baseline.pt"), CKPT,
     ["baseline.pt", "corrupted", "checksum"]),
    ("damaged resume state", _damaged_resume_state, [DRY, lambda r: cli(r, "train", "--stage", "baseline")],
     ["work/baseline/last.pt", "corrupted", "delete it to start this stage over"]),
    ("missing checkpoint", lambda r: (r / "results/baseline.pt").unlink(), [EVAL], ["baseline.pt", "not found"]),
    ("infeasible prune ratio", _infeasible_prune, [lambda r: cli(r, "prune")], ["largest feasible ratio"]),
    ("unreachable prune target", lambda r: _infeasible_prune(r, "prune:\n  target: {flops: 0.001}\n"),
     [lambda r: cli(r, "prune")], ["prune.target: flops 0.001 is not reachable", "reaches flops 0."]),
    # --- command line and environment
    ("train --stage foo", lambda r: None, [lambda r: cli(r, "train", "--stage", "foo")], ["--stage", "invalid choice: 'foo'"]),
    ("evaluate --stage outside results/", lambda r: None, [lambda r: cli(r, "evaluate", "--stage", "../../escape")],
     ["--stage", "'../../escape' is not an artifact under results/"]),
    ("evaluate before prepare-dataset", lambda r: (r / "results/data/dataset.json").unlink(), [EVAL],
     ["results/data/dataset.json: not found", "prepare-dataset"]),
]
if not torch.cuda.is_available():  # this machine has no GPU: a config that asks for one
    CASES.append(("device cuda without a GPU", case("device: cuda\n"), [EVAL, RUN], ["device: cuda", "no usable CUDA"]))



@pytest.mark.parametrize("setup, runners, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line_and_keeps_results(valid, tmp_path, setup, runners, fragments):
    fails_in_one_line_and_keeps_results(valid, tmp_path, setup, runners, fragments)
