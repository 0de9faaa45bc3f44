"""The shared training loop on a toy regression task: learning, EMA, resume, NaN guard."""
import logging
import math
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pipeline_lib.config import defaults
from pipeline_lib.engine import train
from pipeline_lib.engine.ema import ModelEMA
from pipeline_lib.engine.loop import TrainingDiverged
from pipeline_lib.engine.optim import build_optimizer, lr_lambda, param_groups
from pipeline_lib.engine.utils import make_loader, seed_everything
from pipeline_lib.errors import UserError

from conftest import Interrupt, KillInEpoch


def _toy(seed=0):
    seed_everything(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    g = torch.Generator().manual_seed(123)
    x = torch.randn(96, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    loader = make_loader(TensorDataset(x, y), batch_size=16, shuffle=True, workers=0, seed=seed,
                         drop_last=True)
    return model, loader, (x, y)


def _criterion(model, batch):
    x, y = batch
    loss = nn.functional.mse_loss(model(x), y)
    return loss, {"mse": loss.item()}


def _cfg(**overrides):
    cfg = {**defaults()["train"], "epochs": 6, "batch_size": 16, "nominal_batch_size": 16, "lr0": 0.05,
           "warmup_epochs": 1, "ema_tau": 5, "workers": 0}
    return {**cfg, **overrides}


def _run(tmp_path, cfg, hooks=(), run_id="r", **settings):
    model, loader, (x, y) = _toy()

    def evaluate(m):
        m.eval()
        with torch.no_grad():
            return {"mse": nn.functional.mse_loss(m(x), y).item()}

    result = train(model, criterion=_criterion, train_loader=loader, evaluate=evaluate,
                   fitness=lambda m: -m["mse"], cfg=cfg, workdir=tmp_path / "work", device=torch.device("cpu"),
                   run_id=run_id, hooks=hooks, **settings)
    return result, evaluate


def test_loss_falls_and_history_has_one_row_per_epoch(tmp_path):
    result, _ = _run(tmp_path, _cfg())
    rows = result.history
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert rows[-1]["train/mse"] < 0.5 * rows[0]["train/mse"]
    assert {"lr/pg0", "lr/pg1", "lr/pg2", "metrics/mse", "fitness"} <= set(rows[0])
    assert result.fitness == max(r["fitness"] for r in rows)


def test_resume_after_interruption_is_bitwise_identical(tmp_path):
    reference, _ = _run(tmp_path / "a", _cfg())
    with pytest.raises(Interrupt):
        _run(tmp_path / "b", _cfg(), hooks=[KillInEpoch(epoch=3)])
    state = torch.load(tmp_path / "b" / "work" / "last.pt", weights_only=True)
    assert state["epoch"] == 3  # epochs 1-3 completed, the 4th was interrupted
    resumed, _ = _run(tmp_path / "b", _cfg())
    assert len(resumed.history) == 6 and resumed.history[:3] == state["history"]
    for name, tensor in reference.state_dict.items():
        assert torch.equal(tensor, resumed.state_dict[name]), name


class _CentredCriterion:
    """MSE plus a pull towards a running mean of the outputs: state outside the model (like centre loss)."""

    def __init__(self):
        self.centre = torch.zeros(1)

    def __call__(self, model, batch):
        out = model(batch[0])
        loss = nn.functional.mse_loss(out, batch[1]) + 0.1 * (out - self.centre).pow(2).mean()
        self.centre = 0.5 * self.centre + 0.5 * out.detach().mean()
        return loss, {"loss": loss.item()}

    def state_dict(self):
        return {"centre": self.centre}

    def load_state_dict(self, state):
        self.centre = state["centre"]


def test_criterion_state_resumes_with_the_model(tmp_path):
    def run(path, hooks=()):
        model, loader, (x, y) = _toy()
        return train(model, criterion=_CentredCriterion(), train_loader=loader, evaluate=lambda m: {},
                     fitness=lambda m: 0.0, cfg=_cfg(), workdir=path, device=torch.device("cpu"), run_id="r",
                     hooks=hooks)

    run(tmp_path / "a")
    with pytest.raises(Interrupt):
        run(tmp_path / "b", hooks=[KillInEpoch(epoch=3)])
    run(tmp_path / "b")
    reference, resumed = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in "ab")
    assert resumed["epoch"] == 6 and torch.equal(resumed["criterion"]["centre"], reference["criterion"]["centre"])
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_changed_config_does_not_resume(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slimflow")
    with pytest.raises(Interrupt):
        _run(tmp_path, _cfg(), hooks=[KillInEpoch(epoch=2)])
    result, _ = _run(tmp_path, _cfg(lr0=0.02), run_id="other")
    assert "different config" in caplog.text
    assert len(result.history) == 6


class _PoisonLoss:
    def before_step(self, model, epoch, epochs):
        if epoch == 2:
            with torch.no_grad():
                model[0].weight.fill_(float("nan"))


def test_nan_loss_stops_with_last_good_checkpoint_intact(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 3.*last\.pt \(after epoch 2\)"):
        _run(tmp_path, _cfg(clip_grad_norm=0), hooks=[_PoisonLoss()])
    state = torch.load(tmp_path / "work" / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_ema_follows_the_yolov5_ramp():
    model = nn.Linear(2, 1, bias=False)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
        ema.module.weight.fill_(0.0)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 1 - d))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_param_groups_keep_norms_and_biases_out_of_weight_decay():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    decay, norm, bias = param_groups(model)
    assert [p.shape for p in decay] == [model[0].weight.shape]
    assert len(norm) == 1 and len(bias) == 2
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 5e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0, 0.0]
    assert opt.defaults["nesterov"]


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_lr_schedule_runs_from_one_to_lrf(kind):
    lf = lr_lambda(kind, epochs=10, lrf=0.1)
    assert lf(0) == pytest.approx(1.0) and lf(10) == pytest.approx(0.1)
    assert all(lf(e) >= lf(e + 1) for e in range(10))


def test_each_epoch_is_one_line_in_the_log_and_on_the_terminal(tmp_path, capfd):
    from pipeline_lib.runner import run_logged

    log = tmp_path / "train-toy.log"
    result = run_logged(str(log), lambda: _run(tmp_path, _cfg(val_interval=2))[0])
    number = r"-?[\d.]+(?:e[-+]\d+)?"
    line = re.compile(rf"\d\d:\d\d:\d\d (?:INFO )?train epoch (?P<epoch>\d)/6: loss mse=(?P<loss>{number})"
                      rf"(?: \| val mse=(?P<val>{number}))? \| {number}s, (?P<left>stage ETA (?:\d+s|\d+m\d\ds)|done)$")
    text = log.read_bytes().decode()  # as written: read_text would turn carriage returns into newlines
    assert "\r" not in text  # no progress bar in a log file
    in_log = [m for m in map(line.search, text.splitlines()) if m]
    on_terminal = [m for m in map(line.search, capfd.readouterr().err.splitlines()) if m]
    for lines in (in_log, on_terminal):
        assert [int(m["epoch"]) for m in lines] == [1, 2, 3, 4, 5, 6]
        assert [float(m["loss"]) for m in lines] == pytest.approx([r["train/mse"] for r in result.history], rel=1e-3)
        assert [m["val"] is not None for m in lines] == [False, True] * 3  # the evaluated epochs only
        assert [m["left"].startswith("stage ETA") for m in lines] == [True] * 5 + [False]


def test_tensorboard_logger_gets_every_epoch_row(tmp_path):
    pytest.importorskip("tensorboard", reason="the [tb] extra")  # the logger is optional; the engine test is above
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, _ = _run(tmp_path, _cfg(loggers=["tensorboard"]))
    events = EventAccumulator(str(tmp_path / "work" / "tensorboard")).Reload()
    loss = events.Scalars("train/mse")
    assert [e.step for e in loss] == [row["epoch"] for row in result.history]
    assert [e.value for e in loss] == pytest.approx([row["train/mse"] for row in result.history])


def test_mlflow_logger_records_params_every_epoch_and_the_best_metrics_in_a_local_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the [tracking] extra")
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result, _ = _run(tmp_path, _cfg(loggers=["mlflow", "csv"], val_interval=2), mlflow_store=tmp_path / "mlruns")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())  # MLflow's own reader of the store
    (run,) = client.search_runs([client.get_experiment_by_name("slimflow").experiment_id])
    assert run.info.run_name == "train" and run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "6" and run.data.params["lr0"] == "0.05"
    loss = client.get_metric_history(run.info.run_id, "train/mse")
    assert [m.step for m in loss] == [1, 2, 3, 4, 5, 6]
    assert [m.value for m in loss] == pytest.approx([row["train/mse"] for row in result.history])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "metrics/mse")] == [2, 4, 6]
    assert run.data.metrics["best/mse"] == pytest.approx(result.metrics["mse"])
    assert run.data.metrics["best/epoch"] == result.epoch
    # csv: the rows so far, the same as the history the stage's CSV is written from
    rows = pd.read_csv(tmp_path / "work" / "epochs.csv")
    assert rows["train/mse"].tolist() == pytest.approx([row["train/mse"] for row in result.history])


def test_a_missing_mlflow_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed: its import fails
    with pytest.raises(UserError, match=r"^train\.loggers: mlflow needs the mlflow-skinny package: pip install"):
        _run(tmp_path, _cfg(loggers=["mlflow"]), mlflow_store=tmp_path / "mlruns")


def test_channels_last_trains_the_same_network_and_publishes_nchw_weights(tmp_path):
    from pipeline_lib.checkpoint import save_checkpoint
    from pipeline_lib.engine.loop import channels_last

    assert channels_last("auto", torch.device("cpu")) is False and channels_last(True, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randn(64, 1, generator=g)
    trained = {}
    for layout in (False, True):
        seed_everything(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
        loader = make_loader(TensorDataset(x, y), batch_size=16, shuffle=True, workers=0, seed=0, drop_last=True)
        seen = []
        train(model, criterion=lambda m, b: (seen.append(m[0].weight.is_contiguous()) or _criterion(m, b)),
              train_loader=loader, evaluate=lambda m: {"mse": 0.0}, fitness=lambda m: 0.0,
              cfg=_cfg(epochs=2, ema=False, channels_last=layout), workdir=tmp_path / str(layout),
              device=torch.device("cpu"), run_id="r")
        assert not any(seen) if layout else all(seen)  # NHWC weights while training, only when asked
        save_checkpoint(tmp_path / f"{layout}.pt", model, {"family": "toy"}, {})
        trained[layout] = torch.load(tmp_path / f"{layout}.pt", weights_only=True)["state_dict"]
    for name, tensor in trained[True].items():
        assert tensor.is_contiguous(), name
        torch.testing.assert_close(tensor, trained[False][name], atol=1e-4, rtol=1e-4)


def _sum_loss(model, batch):
    x, y = batch
    loss = ((model(x) - y) ** 2).sum()  # summed over this process's images, as YOLOv5's loss is
    return loss, {"sse": loss.item()}


def _one_step(out: str) -> None:
    """One optimizer step on 16 samples (one batch over all processes), the weights saved to `out`."""
    from pipeline_lib.engine import distributed

    seed_everything(0)
    model = nn.Linear(4, 1)
    g = torch.Generator().manual_seed(5)
    data = TensorDataset(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g))
    world = distributed.world_size()
    loader = make_loader(data, batch_size=16 // world, shuffle=True, workers=0, seed=0)
    cfg = _cfg(epochs=1, batch_size=16, nominal_batch_size=16, warmup_epochs=0, ema=False, lr0=0.01, clip_grad_norm=0)
    result = train(model, criterion=_sum_loss, train_loader=loader, evaluate=lambda m: {"mse": 0.0},
                   fitness=lambda m: 0.0, cfg=cfg, workdir=Path(out).parent / f"work{world}",
                   device=torch.device("cpu"), run_id="r", loss_sums_over_batch=True)
    if result is not None:
        torch.save(model.state_dict(), out)


def test_a_loss_summed_over_the_batch_steps_alike_in_one_process_and_in_two(tmp_path):
    """DDP averages gradients over ranks; a loss summed over each rank's images is scaled by the
    world size, so two processes of 8 images step as one process of 16 does."""
    from pipeline_lib.engine import distributed

    _one_step(str(tmp_path / "one.pt"))
    distributed.launch(_one_step, nprocs=2, backend="gloo", out=str(tmp_path / "two.pt"))
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert not torch.equal(one["weight"], _initial_weight())  # it stepped
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)


def _initial_weight() -> torch.Tensor:
    seed_everything(0)
    return nn.Linear(4, 1).weight.detach()
