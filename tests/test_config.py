"""Config schema: defaults fill in, mistakes fail in one line naming file:line and key."""
from pathlib import Path

import pytest

from pipeline_lib.config import config_hash, defaults, load_config, stage_config, validate_config
from pipeline_lib.errors import UserError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "int8_auto.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(REPO / "config" / name)
    assert cfg["train"]["optimizer"] in {"sgd", "adam", "adamw"}
    assert cfg["evaluate"]["iou_thres"] > 0


def test_defaults_fill_nested_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n")
    cfg = load_config(path)
    assert cfg["train"]["epochs"] == 3
    assert cfg["train"]["augment"]["mosaic"] == defaults()["train"]["augment"]["mosaic"]
    assert cfg["dataset"]["synthetic"]["n_train"] > 0


@pytest.mark.parametrize("text, line, key", [
    ("seed: 1\ntrain:\n  epochs: 2\n  epoch: 3\n", 4, "train.epoch: unknown key"),
    ("model:\n  imgsz: big\n", 2, "model.imgsz: 'big' is not of type 'integer'"),
    ("train:\n  epochs: -1\n", 2, "train.epochs: -1 is less than the minimum of 1"),
    ("model:\n  imgsz: 100\n", 2, "model.imgsz: 100 is not a multiple of 32"),
    ("model:\n  name: resnet999\n", 2, "model.name:"),
    ("task: reid\nmodel:\n  name: yolov5s\n", 3, "model.name: 'yolov5s' is not one of ['resnet18'"),
    ("model:\n  act: gelu\n", 2, "model.act: 'gelu' is not one of"),
    ("bogus: 1\n", 1, "bogus: unknown key"),
    ("prune:\n  iterations: 2\n  ratio: [0.3, 0.3, 0.3]\n", 3, "prune.ratio: 3 ratios given for prune.iterations=2"),
    ("prune:\n  ratio: 1.0\n", 2, "prune.ratio:"),
    ("prune:\n  sweep: [0.5, 1.5]\n", 2, "prune.sweep.1: 1.5 is greater than or equal to the maximum of 1"),
    ("prune:\n  target: {flops: 0.4, speedup: 2}\n", 2, "prune.target: give exactly one of flops, latency_ms, "
     "speedup (got flops, speedup)"),
    ("prune:\n  target: {runs: 20}\n", 2, "prune.target: give exactly one of flops, latency_ms, speedup (got none)"),
    ("prune:\n  target: {flops: 0.4, int8: true}\n", 2, "prune.target: int8: true times the INT8 model, and a flops"),
    ("export:\n  int8: false\nprune:\n  target: {speedup: 3, int8: true}\n", 4,
     "prune.target: int8: true counts the INT8 model but export.int8 is false"),
    ("prune:\n  sweep: [{latency_ms: 9}, {flops: 0.3, int8: true}]\n", 2, "prune.sweep.1: int8: true times the INT8"),
    ("prune:\n  iterations: 2\n  target:\n    flops: 0.4\n", 3, "prune.target: a target sets the final model's"),
    ("prune:\n  target: {speedup: 0.5}\n", 2, "prune.target.speedup: 0.5 is less than or equal to the minimum of 1"),
    ("export:\n  int8_float_layers: all\n", 2, "export.int8_float_layers: 'all' is not 'auto' or a list"),
    ("export:\n  int8_calibration: kl\n", 2, "export.int8_calibration: 'kl' is not one of ['minmax', 'entropy'"),
    # keys of another family are unknown keys
    ("task: reid\nmodel:\n  name: resnet18\n  anchors: auto\n", 4, "model.anchors: unknown key"),  # a detector key
    ("task: reid\ntrain:\n  augment:\n    mosaic: 0.0\n", 4, "train.augment.mosaic: unknown key"),
    ("task: reid\nevaluate:\n  iou_thres: 0.5\n", 3, "evaluate.iou_thres: unknown key"),
    ("task: detection\nmodel:\n  neck_feat: after\n", 3, "model.neck_feat: unknown key"),  # a ReID key
    # the activation swap is the detector's: the only family whose architecture has `act`
    ("task: reid\nstages:\n  finetune:\n    act: relu\n", 4, "stages.finetune.act: unknown key"),
    ("stages:\n  finetune:\n    act: gelu\n", 3, "stages.finetune.act: 'gelu' is not one of"),
    ("model:\n  name: resnet18\n", 2, "model.name: 'resnet18' is not one of"),
    ("seed: 1\ntask: segmentation\n", 2, "task: 'segmentation' is not a model family (one of: "),
])
def test_mistakes_name_file_line_and_key(tmp_path, text, line, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {key}")
    assert "\n" not in message


@pytest.mark.parametrize("export_int8", [True, "auto"])
def test_a_target_may_count_int8_where_the_chain_builds_an_int8_model(tmp_path, export_int8):
    path = tmp_path / "int8.yaml"
    path.write_text(f"export:\n  int8: {str(export_int8).lower()}\nprune:\n  target: {{speedup: 3, int8: true}}\n")
    assert load_config(path)["prune"]["target"] == {"speedup": 3, "int8": True}


def test_each_family_gets_its_own_defaults(tmp_path):
    path = tmp_path / "reid.yaml"
    path.write_text("task: reid\n")
    cfg = load_config(path)
    assert cfg["model"]["name"] == "resnet50" and cfg["model"]["imgsz"] == [256, 128]
    assert "mosaic" not in cfg["train"]["augment"] and "conf_thres" not in cfg["evaluate"]
    assert defaults()["model"]["name"] == "yolov5n" and "instances" not in defaults()["train"]["augment"]


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(UserError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)


def test_stage_overrides_and_hash():
    cfg = defaults()
    cfg["stages"]["baseline"] = {"epochs": 7}
    cfg["stages"]["finetune"] = {"lr0": 0.001}
    merged = stage_config(cfg, "baseline")
    assert merged["epochs"] == 7 and merged["lr0"] == cfg["train"]["lr0"]
    assert stage_config(cfg, "pruned_finetuned")["lr0"] == 0.001
    assert stage_config(cfg, "sparse")["sr"] > 0 and "sr" not in stage_config(cfg, "baseline")
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1}) != config_hash({"a": 2, "b": 2})


def test_key_order_does_not_change_the_validated_config():
    # Snakemake compares rule params as text: reordered YAML keys must not rerun a step.
    a = validate_config({"dataset": {"synthetic": {"n_train": 5, "imgsz": 64}}})
    b = validate_config({"dataset": {"synthetic": {"imgsz": 64, "n_train": 5}}})
    assert repr(a["dataset"]) == repr(b["dataset"])


def _files(tmp_path, **texts) -> list[Path]:
    paths = []
    for name, text in texts.items():
        (tmp_path / f"{name}.yaml").write_text(text)
        paths.append(tmp_path / f"{name}.yaml")
    return paths


def test_the_file_whose_value_won_the_merge_is_named(tmp_path):
    # Snakemake's order: the Snakefile's configfile, then each --configfile; later files win.
    own, test, mine = _files(tmp_path, own="seed: 0\ntrain:\n  epochs: 40\n  lr0: 0.01\n",
                             test="train:\n  epochs: 2\n", mine="model:\n  imgsz: 64\ntrain:\n  epochs: -1\n")
    with pytest.raises(UserError, match=rf"^{mine}:4: train\.epochs: -1"):
        load_config([own, test, mine])
    middle, last = _files(tmp_path, t2="train:\n  epochs: -1\n", m2="seed: 1\n")
    with pytest.raises(UserError, match=rf"^{middle}:2: train\.epochs: -1"):  # the middle file won
        load_config([own, middle, last])


def test_a_replaced_list_and_a_command_line_value_are_located(tmp_path):
    from pipeline_lib.config import _locate

    first, second = _files(tmp_path, a="prune:\n  ratio: [0.5, 0.5]\n", b="x: 1\nprune:\n  ratio:\n    - 0.2\n    - 2.0\n")
    assert _locate(("prune", "ratio", 1), [first, second]) == f"{second}:5"
    assert _locate(("prune", "ratio", 1), [first, second], overrides={"prune": {"ratio": [0.1, 3]}}) == "--config"
    assert _locate(("train", "epochs"), [first, second], overrides={"train": {"lr0": 1}}) == str(second)  # a default


def test_a_key_given_twice_is_an_error_with_its_line(tmp_path):
    path = _files(tmp_path, dup="train:\n  epochs: 2\n  lr0: 0.1\n  epochs: 3\n")[0]
    with pytest.raises(UserError, match=rf"^{path}:4: key 'epochs' given twice \(first on line 2\)"):
        load_config(path)


def test_a_config_laid_over_another_switches_the_prune_target_by_nulling_the_old_key():
    cfg = load_config([REPO / "config/config.yaml", REPO / "config/speedup.yaml"])
    assert cfg["prune"]["target"] == {"speedup": 2.5}
    assert load_config([REPO / "config/config.yaml", REPO / "config/ratio05.yaml"])["prune"]["target"] is None


def test_the_checks_before_any_job_import_no_torch():
    """Config validation, each family's checks.py and the evaluator lookup run while Snakemake
    parses the workflow; torch would add seconds to every invocation (docs/FAMILIES.md)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from pipeline_lib.config import load_config\n"
            "from pipeline_lib.preflight import preflight\n"
            "from pipeline_lib.tasks import families, family_check, has_evaluator\n"
            "load_config(['config/config.yaml'])\n"
            "found = {f: (family_check(f, 'check_config') is not None, family_check(f, 'check_dataset') is not None,"
            " has_evaluator(f)) for f in families()}\n"
            "print(found, sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found, modules = proc.stdout.rsplit(" ", 1)
    assert modules.strip() == "[]"
    assert found == str({"detection": (True, True, False), "diffusion": (False, True, True),
                         "pose": (False, True, False), "reid": (False, True, False)})
