"""Distillation while finetuning: each family's term, the teacher's mode, the criterion wrapper in the
one training loop, the config keys and the chain's teacher paths."""
import copy

import pytest
import torch
from torch import nn

from pipeline_lib import chain
from pipeline_lib.config import defaults, validate_config
from pipeline_lib.distill import Distillation, teacher_mode
from pipeline_lib.engine import train
from pipeline_lib.engine.utils import seed_everything
from pipeline_lib.errors import UserError
from pipeline_lib.tasks import get_task

from conftest import randomize_bn

CFG = {"teacher": "sparse", "weight": 1.0, "temperature": 2.0}


def _detection():
    task = get_task("detection")
    manifest = {"names": ["a", "b", "c"], "nc": 3}
    model = task.build_model(task.arch({**defaults("detection")["model"], "imgsz": 64, "anchors": "coco"}, manifest))
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.3, 0.6, 0.2, 0.2]])
    return task, model, {"images": torch.rand(2, 3, 64, 64), "targets": targets}


def _reid():
    task = get_task("reid")
    model = task.build_model({"family": "reid", "name": "resnet18", "kwargs": {"num_classes": 4, "name": "resnet18"}})
    return task, model, {"images": torch.rand(4, 3, 64, 32), "labels": torch.tensor([0, 0, 1, 1])}


def _pose():
    task = get_task("pose")
    arch = task.arch({**defaults("pose")["model"], "name": "hrnet_small", "imgsz": [64, 32], "width": 8, "stem": 8},
                     {"names": [f"k{i}" for i in range(5)]})
    batch = {"images": torch.rand(2, 3, 64, 32), "joints": torch.rand(2, 5, 2) * 8, "visible": torch.ones(2, 5)}
    return task, task.build_model(arch), batch


FAMILIES = {"detection": _detection, "reid": _reid, "pose": _pose}


def _setup(family):
    seed_everything(0)
    task, model, batch = FAMILIES[family]()
    return task, randomize_bn(model), batch  # running statistics unlike batch statistics, as after training


def _cfg(family):
    return {**defaults(family)["train"], "distill": CFG}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_term_is_exactly_zero_for_equal_outputs_and_positive_for_others(family):
    task, model, batch = _setup(family)
    model.train()
    student = model(batch["images"])
    with torch.no_grad():
        teacher = model(batch["images"])  # the same module in the same mode: the same outputs
    assert task.distill_loss(student, teacher, CFG).item() == 0.0
    other = randomize_bn(copy.deepcopy(model), seed=1).train()
    with torch.no_grad():
        assert task.distill_loss(student, other(batch["images"]), CFG).item() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_a_student_equal_to_its_teacher_gets_zero_through_the_wrapper(family):
    """The teacher runs in teacher_mode (norms on running statistics, outputs in train-mode form);
    a student with frozen norms (as under LoRA without train_bn) equal to it computes the same."""
    task, model, batch = _setup(family)
    teacher = teacher_mode(copy.deepcopy(model).requires_grad_(False))
    student = teacher_mode(model)
    criterion = Distillation(task.criterion(student, _cfg(family)), teacher, task, CFG)
    loss, items = criterion(student, batch)
    assert items["distill"] == 0.0
    plain, plain_items = task.criterion(student, _cfg(family))(student, batch)
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6)
    assert set(items) == {*plain_items, "distill"}


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_reaches_the_student_only(family):
    task, model, batch = _setup(family)
    teacher = teacher_mode(randomize_bn(copy.deepcopy(model), seed=1).requires_grad_(False))
    model.train()
    loss, items = Distillation(task.criterion(model, _cfg(family)), teacher, task, CFG)(model, batch)
    assert items["distill"] > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)


def test_the_distill_term_alone_moves_the_student():
    """With the task loss zeroed, the gradient is the teacher's term's alone: it is not detached."""
    task, model, batch = _setup("pose")
    teacher = teacher_mode(randomize_bn(copy.deepcopy(model), seed=1).requires_grad_(False))
    zero = lambda m, b: (m(b["images"]).sum() * 0, {})  # noqa: E731
    loss, _ = Distillation(zero, teacher, task, CFG)(model.train(), batch)
    loss.backward()
    assert model.final_layer.weight.grad.abs().sum() > 0


def test_teacher_mode_freezes_norm_statistics_but_keeps_the_train_mode_output_form():
    task, model, batch = _setup("detection")
    teacher = teacher_mode(model)
    assert teacher.training and teacher.detect.training
    assert all(not m.training for m in teacher.modules() if isinstance(m, nn.BatchNorm2d))
    out = teacher(batch["images"])
    assert isinstance(out, list) and out[0].dim() == 5  # raw per-level maps, as the student's


def _items(batch):
    return [{k: v[i] for k, v in batch.items()} for i in range(len(batch["images"]))]


def test_the_teacher_never_changes_in_the_training_loop(tmp_path):
    task, model, batch = _setup("reid")
    teacher = teacher_mode(randomize_bn(copy.deepcopy(model), seed=1).requires_grad_(False))
    before = copy.deepcopy(teacher.state_dict())
    cfg = {**_cfg("reid"), "epochs": 2, "batch_size": 4, "nominal_batch_size": 4, "warmup_epochs": 0, "workers": 0}
    result = train(model, criterion=Distillation(task.criterion(model, cfg), teacher, task, CFG),
                   train_loader=torch.utils.data.DataLoader(_items(batch) * 3, batch_size=4),
                   evaluate=lambda m: {"x": 0.0}, fitness=lambda m: 0.0, cfg=cfg, workdir=tmp_path,
                   device=torch.device("cpu"), run_id="distill")
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and running statistics
    assert all(row["train/distill"] > 0 for row in result.history)
    assert not torch.equal(model.state_dict()["classifier.weight"], before["classifier.weight"])


def test_a_stateful_criterion_keeps_its_state_through_the_wrapper():
    task, model, _ = _setup("reid")
    cfg = _cfg("reid")
    cfg["loss"] = {**cfg["loss"], "center": 0.1}
    criterion = Distillation(task.criterion(model, cfg), model, task, CFG)
    state = criterion.state_dict()
    assert "center.centers" in state
    criterion.load_state_dict(state)
    assert Distillation(lambda m, b: (0, {}), model, task, CFG).state_dict() is None


def test_config_keys_defaults_and_where_distill_is_allowed():
    cfg = validate_config({"stages": {"finetune": {"distill": {}}}})
    assert cfg["stages"]["finetune"]["distill"] == {"teacher": "sparse", "temperature": 2.0, "weight": 1.0}
    assert "distill" not in defaults()["stages"]["finetune"]  # off unless asked for
    with pytest.raises(UserError, match=r"stages\.sparse\.distill: unknown key"):
        validate_config({"stages": {"sparse": {"distill": {}}}})
    with pytest.raises(UserError, match=r"stages\.finetune\.distill\.teacher: 'pruned' is not one of"):
        validate_config({"stages": {"finetune": {"distill": {"teacher": "pruned"}}}})
    with pytest.raises(UserError, match=r"stages\.finetune\.distill\.weight"):
        validate_config({"stages": {"finetune": {"distill": {"weight": 0}}}})


def test_each_lineage_distills_from_its_own_unpruned_model():
    cfg = validate_config({"prune": {"iterations": 3, "sweep": [0.3]}, "stages": {"finetune": {"distill": {}}}})
    assert chain.teacher("", "pruned_finetuned", cfg).checkpoint == "results/sparse.pt"
    assert chain.teacher("iter/2/", "pruned_finetuned", cfg).checkpoint == "results/iter/2/sparse.pt"
    assert chain.teacher("sweep/r0.3/", "pruned_finetuned", cfg).checkpoint == "results/sparse.pt"
    assert chain.teacher("", "sparse", cfg) is None  # only the finetune distills
    cfg["stages"]["finetune"]["distill"]["teacher"] = "baseline"
    assert chain.teacher("iter/2/", "pruned_finetuned", cfg).checkpoint == "results/baseline.pt"
    assert chain.teacher("", "pruned_finetuned", defaults()) is None


def test_a_lora_student_starts_at_its_plain_teacher_and_trains_only_its_adapters():
    from pipeline_lib import adapters

    task, model, batch = _setup("detection")
    teacher = teacher_mode(copy.deepcopy(model).requires_grad_(False))
    adapters.inject(model, r=2, alpha=2, targets=None, fixed=task.keep_width_modules(model))
    model.train()
    adapters.FrozenNorms().on_train_mode(model)  # as the loop's LoRA hook does
    loss, items = Distillation(task.criterion(model, _cfg("detection")), teacher, task, CFG)(model, batch)
    assert items["distill"] == 0.0  # B starts at zero: the student's outputs are the teacher's
    loss.backward()
    assert all((p.grad is not None) == (".lora_" in n) for n, p in model.named_parameters())
