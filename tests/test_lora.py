"""LoRA adapters: exact at step 0, merge = forward, only adapters train, the adapter file and its base."""
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pipeline_lib import adapters
from pipeline_lib.checkpoint import save_checkpoint
from pipeline_lib.config import defaults
from pipeline_lib.engine import train
from pipeline_lib.engine.utils import make_loader, seed_everything
from pipeline_lib.errors import UserError
from pipeline_lib.tasks import get_task, load_model
from pipeline_lib.torchfile import load_sealed

from conftest import Interrupt, KillInEpoch

LAYERS = {
    "linear": lambda: nn.Linear(12, 10),
    "conv1x1": lambda: nn.Conv2d(6, 10, 1),
    "conv3x3": lambda: nn.Conv2d(6, 10, 3, padding=1),
    "conv3x3_stride2": lambda: nn.Conv2d(6, 10, 3, stride=2, padding=1, bias=False),
    "conv5x5_dilated": lambda: nn.Conv2d(6, 10, 5, padding=4, dilation=2),
    "conv3x3_groups2": lambda: nn.Conv2d(6, 10, 3, padding=1, groups=2),
}


def _input(layer):
    return torch.randn(3, 12) if isinstance(layer, nn.Linear) else torch.randn(2, 6, 9, 11)


def _wrapped(layer, r=4, alpha=8.0):
    model = nn.Sequential(layer)
    adapters.inject(model, r=r, alpha=alpha, targets=["0"])
    return model


@pytest.mark.parametrize("kind", LAYERS)
def test_zero_b_gives_the_base_output_exactly(kind):
    torch.manual_seed(0)
    base = LAYERS[kind]()
    x = _input(base)
    expected = base(x)
    model = _wrapped(copy.deepcopy(base))
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize("kind", LAYERS)
def test_merged_equals_unmerged(kind):
    torch.manual_seed(0)
    model = _wrapped(LAYERS[kind](), r=4, alpha=12.0)  # scale 3: a merge without alpha / r would be off
    nn.init.normal_(model[0].lora_B.weight, std=0.5)
    x = _input(model[0].base)
    with torch.no_grad():
        unmerged = model(x)
        lora_part = unmerged - model[0].base(x)
        merged = adapters.merge(model)(x)
    assert type(model[0]) in (nn.Linear, nn.Conv2d)
    assert lora_part.abs().max() > 0.1  # the adapter changes the output, so equality below means something
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)


def test_grouped_conv_with_a_rank_not_divisible_by_groups_is_refused():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=4))
    with pytest.raises(UserError, match=r"groups=4; r=6 must be a multiple"):
        adapters.inject(model, r=6, alpha=6, targets=["conv"])


def test_targets_kinds_patterns_defaults_and_an_empty_match():
    def model():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 4), nn.Linear(4, 2))

    m = model()
    assert adapters.resolve_targets(m, ["linear"]) == ["2", "3"]
    assert adapters.resolve_targets(m, ["conv", "3"]) == ["0", "3"]
    assert adapters.resolve_targets(m, None, fixed=[m[3]]) == ["0", "2"]  # a fixed-width head stays frozen
    with pytest.raises(UserError, match=r"lora.targets: 'backbone\.\*' matches no Linear or Conv2d layer"):
        adapters.resolve_targets(m, ["backbone.*"])


def _toy_task(seed=0):
    seed_everything(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                          nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, 12, 12, generator=g)
    y = x.mean(dim=(1, 2, 3)).unsqueeze(1) * 3
    loader = make_loader(TensorDataset(x, y), batch_size=16, shuffle=True, workers=0, seed=seed, drop_last=True)
    return model, loader, (x, y)


def _train(model, loader, data, workdir, hooks=()):
    x, y = data

    def evaluate(m):
        m.eval()
        with torch.no_grad():
            return {"mse": nn.functional.mse_loss(m(x), y).item()}

    cfg = {**defaults()["train"], "epochs": 3, "batch_size": 16, "nominal_batch_size": 16, "lr0": 0.05,
           "warmup_epochs": 0, "ema_tau": 2, "workers": 0}
    return train(model, criterion=lambda m, b: (nn.functional.mse_loss(m(b[0]), b[1]), {}), train_loader=loader,
                 evaluate=evaluate, fitness=lambda m: -m["mse"], cfg=cfg, workdir=workdir,
                 device=torch.device("cpu"), run_id="lora", hooks=hooks)


@pytest.mark.parametrize("train_bn", [False, True])
def test_training_changes_only_the_adapters(tmp_path, train_bn):
    model, loader, data = _toy_task()
    base = copy.deepcopy(model.state_dict())
    adapters.inject(model, r=2, alpha=2, targets=None, train_bn=train_bn)
    result = _train(model, loader, data, tmp_path, hooks=[] if train_bn else [adapters.FrozenNorms()])
    model.load_state_dict(result.state_dict)  # the published (EMA) weights
    trained = model.state_dict()
    adapter_keys = [k for k in trained if ".lora_" in k]
    assert adapter_keys and all(not torch.equal(trained[k], torch.zeros_like(trained[k]))
                                for k in adapter_keys if ".lora_B." in k)
    norm_keys = [k for k in base if k.startswith(("1.", "4."))]
    for key, value in base.items():
        wrapped = key.replace(".weight", ".base.weight").replace(".bias", ".base.bias") if key[0] in "038" else key
        if key in norm_keys and train_bn:
            continue
        assert torch.equal(trained[wrapped], value), f"{key} changed"
    if train_bn:  # BN scales and running statistics train and are part of the adapter
        assert not torch.equal(trained["1.running_mean"], base["1.running_mean"])
        assert "1.running_mean" in adapters.adapter_state(model, train_bn=True)
    assert sorted(adapters.adapter_state(model)) == sorted(adapter_keys)


def _detector_checkpoint(path, seed=0):
    task = get_task("detection")
    seed_everything(seed)
    manifest = {"names": ["a", "b"], "nc": 2, "task": "detection"}
    cfg = {**defaults("detection")["model"], "imgsz": 64, "anchors": "coco"}
    arch = task.arch(cfg, manifest)
    model = task.build_model(arch)
    save_checkpoint(path, model, arch, {"stage": "pruned", "imgsz": 64, "names": manifest["names"]})
    return task, model


def test_adapter_file_round_trip_and_wrong_base_refusal(tmp_path):
    task, model = _detector_checkpoint(tmp_path / "base.pt")
    cfg = {"r": 4, "alpha": None, "dropout": 0.0, "targets": None, "train_bn": False}
    names = adapters.inject_from_config(model, cfg, task.keep_width_modules(model))
    for name in names:
        nn.init.normal_(model.get_submodule(name).lora_B.weight, std=0.02)
    adapters.save_adapter(tmp_path / "a.lora.pt", model, cfg, names, base=tmp_path / "base.pt", meta={"stage": "x"})

    raw = torch.load(tmp_path / "a.lora.pt", weights_only=True)  # plain containers, no pickled code
    assert raw["lora"]["alpha"] == 4 and raw["layers"] == names
    assert all(".lora_" in k for k in raw["state_dict"])
    assert (tmp_path / "a.lora.pt").stat().st_size < 0.5 * (tmp_path / "base.pt").stat().st_size

    x = task.example_input(64)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        applied = adapters.apply_adapter(tmp_path / "base.pt", tmp_path / "a.lora.pt").model
        assert not any(isinstance(m, adapters.LoRALayer) for m in applied.modules())
        torch.testing.assert_close(applied(x), expected, atol=1e-5, rtol=0)

    _detector_checkpoint(tmp_path / "other.pt", seed=1)
    with pytest.raises(UserError, match=r"a\.lora\.pt: this adapter belongs to the base .*base\.pt .*not to .*other\.pt"):
        adapters.apply_adapter(tmp_path / "other.pt", tmp_path / "a.lora.pt")
    assert load_sealed(tmp_path / "a.lora.pt", remedy="-")["base_sha256"]  # the file is sealed like every other
    assert load_model(tmp_path / "base.pt").model is not None


def _lora_run(workdir, hooks=()):
    model, loader, data = _toy_task()
    adapters.inject(model, r=2, alpha=4, dropout=0.1, targets=None)  # dropout: the RNG must resume too
    return _train(model, loader, data, workdir, hooks=[adapters.FrozenNorms(), *hooks])


def test_a_lora_stage_is_deterministic_and_resumes_bitwise(tmp_path):
    reference = _lora_run(tmp_path / "a")
    again = _lora_run(tmp_path / "b")
    with pytest.raises(Interrupt):
        _lora_run(tmp_path / "c", hooks=[KillInEpoch(1)])
    assert torch.load(tmp_path / "c" / "last.pt", weights_only=True)["epoch"] == 1  # resumes after epoch 1
    resumed = _lora_run(tmp_path / "c")
    assert len(resumed.history) == 3
    for name, tensor in reference.state_dict.items():
        assert torch.equal(tensor, again.state_dict[name]) and torch.equal(tensor, resumed.state_dict[name]), name


@pytest.mark.parametrize("kind", LAYERS)
def test_full_rank_is_the_rank_at_which_the_merged_delta_stops_growing(kind):
    """At r = full_rank the merged B·A reaches full rank in every group; one below, it cannot."""
    layer = LAYERS[kind]()
    full, groups = adapters.full_rank(layer), getattr(layer, "groups", 1)

    def delta_rank(r):
        model = _wrapped(copy.deepcopy(layer), r=r, alpha=r)
        nn.init.normal_(model[0].lora_B.weight)
        delta = model[0].delta_weight().reshape(groups, layer.weight.shape[0] // groups, -1)
        return sum(int(torch.linalg.matrix_rank(d)) for d in delta)  # float32 tolerance: B·A is float32

    assert delta_rank(full) == full
    assert delta_rank(full - groups) == full - groups  # the next rank a grouped conv allows, one short


def test_a_rank_at_or_above_a_layers_width_is_one_warning_naming_it(caplog):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 32, 3), nn.Flatten(), nn.Linear(32, 64))
    cfg = {"r": 4, "alpha": None, "dropout": 0.0, "targets": None, "train_bn": False}  # a stage's lora section
    with caplog.at_level("WARNING", logger="slimflow"):
        adapters.inject_from_config(model, cfg, key="stages.finetune.lora")
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # "0": min(4 out, 3·1·1 in) = 3 ≤ 4; "1": min(32, 4·3·3) = 32 > 4; "3": min(64, 32) = 32 > 4
    assert len(lines) == 1 and lines[0].startswith("stages.finetune.lora.r: r=4 is at or above the full rank of 1 of 3")
    assert "0 (full rank 3)" in lines[0] and "Lower r below 3" in lines[0] and "stages.finetune.lora.targets" in lines[0]
    assert "1 (full rank" not in lines[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="slimflow"):
        adapters.inject_from_config(nn.Sequential(nn.Conv2d(3, 4, 1)), {**cfg, "r": 2})
    assert not caplog.records
