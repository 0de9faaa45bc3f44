"""Diffusion family: the Fréchet distance against an independent computation, and the digit judge
(learns a separable toy problem, deterministic for a seed, checkpoint round trip, feature shape)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pipeline_lib.engine.utils import make_loader
from pipeline_lib.errors import UserError
from pipeline_lib.torchfile import load_sealed
from pipeline_lib.tasks.diffusion.frechet import feature_stats, frechet_distance
from pipeline_lib.tasks.diffusion.judge import (DigitJudge, class_accuracy, evaluate_judge, judge_outputs, load_judge,
                                                save_judge, train_judge)
from pipeline_lib.tasks.diffusion.report import judge_ceiling


# ---------------------------------------------------------------- Fréchet distance

def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _frechet_by_eigh(mu1, s1, mu2, s2) -> float:
    """Independent route: Tr((s1 s2)^½) = Σ sqrt(eig(s1^½ s2 s1^½)), s1^½ from a symmetric eigendecomposition."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_matches_the_eigendecomposition_route_on_random_spd_matrices(seed):
    rng = np.random.default_rng(seed)
    mu1, mu2, s1, s2 = rng.normal(size=16), rng.normal(size=16), _spd(rng, 16), _spd(rng, 16)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert isinstance(got, float) and got > 0
    assert got == pytest.approx(_frechet_by_eigh(mu1, s1, mu2, s2), rel=1e-9, abs=1e-9)
    assert got == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)  # symmetric


def test_frechet_of_1d_gaussians_is_the_closed_form():
    rng = np.random.default_rng(3)
    for _ in range(5):
        m1, m2, sd1, sd2 = rng.normal(), rng.normal(), rng.uniform(0.1, 3), rng.uniform(0.1, 3)
        got = frechet_distance(np.array([m1]), np.array([[sd1 ** 2]]), np.array([m2]), np.array([[sd2 ** 2]]))
        assert got == pytest.approx((m1 - m2) ** 2 + (sd1 - sd2) ** 2, rel=1e-9)


def test_frechet_is_zero_for_identical_stats_and_grows_with_a_shift():
    rng = np.random.default_rng(4)
    mu, sigma = rng.normal(size=16), _spd(rng, 16)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    direction = rng.normal(size=16)
    distances = [frechet_distance(mu, sigma, mu + t * direction, sigma) for t in (0.5, 1.0, 2.0)]
    assert distances == pytest.approx([t * t * direction @ direction for t in (0.5, 1.0, 2.0)], rel=1e-6)
    assert distances[0] < distances[1] < distances[2]
    assert frechet_distance(mu, sigma, mu, 4 * sigma) > frechet_distance(mu, sigma, mu, 2 * sigma) > 0


def test_frechet_of_singular_covariances_is_finite():
    # fewer samples than features: rank-deficient covariances, the case pytorch-fid regularises
    rng = np.random.default_rng(5)
    mu1, s1 = feature_stats(rng.normal(size=(6, 16)))
    mu2, s2 = feature_stats(rng.normal(size=(6, 16)) + 1.0)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(got) and got == pytest.approx(_frechet_by_eigh(mu1, s1, mu2, s2), rel=1e-4)
    # ReLU features with dead units: sqrtm's off-diagonal entries come out complex, its trace does not
    x, y = np.maximum(rng.normal(size=(20, 64)) - 1, 0), np.maximum(rng.normal(size=(20, 64)) - 1.2, 0)
    x[:, 32:], y[:, 28:] = 0, 0
    (mu3, s3), (mu4, s4) = feature_stats(x), feature_stats(y)
    assert frechet_distance(mu3, s3, mu4, s4) == pytest.approx(_frechet_by_eigh(mu3, s3, mu4, s4), rel=1e-6)
    zero = np.zeros((16, 16))
    assert frechet_distance(mu1, zero, mu1, zero) == 0.0  # two point masses at the same place
    with pytest.raises(ValueError, match="shapes do not fit"):
        frechet_distance(mu1, s1, mu2[:8], s2)


def test_feature_stats_match_numpy_and_accept_tensors():
    x = np.random.default_rng(6).normal(size=(50, 7)).astype(np.float32)
    mu, sigma = feature_stats(torch.from_numpy(x))
    assert mu.dtype == sigma.dtype == np.float64 and mu.shape == (7,) and sigma.shape == (7, 7)
    np.testing.assert_allclose(mu, np.mean(x.astype(np.float64), axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)
    assert feature_stats(x[:, :1])[1].shape == (1, 1)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(x[:1])


def test_frechet_of_samples_is_small_for_one_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(7)
    mix = _spd(rng, 8)
    draw = lambda shift=0.0: rng.normal(size=(4000, 8)) @ mix + shift  # noqa: E731
    same = frechet_distance(*feature_stats(draw()), *feature_stats(draw()))
    shifted = frechet_distance(*feature_stats(draw()), *feature_stats(draw(0.5)))
    assert same < 0.05 and shifted > 8 * 0.25 * 0.9 and shifted > 20 * same


# ---------------------------------------------------------------- the judge

def _squares(n: int, seed: int) -> list[dict]:
    """10 classes of 16x16 images: a bright 3x3 square in the class's own cell of a 4x4 grid, on noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (0.1 * torch.randn(n, 1, 16, 16, generator=g)).clamp(0, 1)
    for i, k in enumerate(labels.tolist()):
        r, c = 4 * (k // 4) + 1, 4 * (k % 4) + 1
        images[i, 0, r:r + 3, c:c + 3] = 1.0
    return [{"images": image, "labels": label} for image, label in zip(images, labels)]


SMALL = {"width": 16, "feature_dim": 32}


def _loaders(seed: int = 0, val=None):
    return (make_loader(_squares(200, 0), batch_size=10, shuffle=True, workers=0, seed=seed),
            make_loader(val or _squares(100, 1), batch_size=50, shuffle=False, workers=0, seed=0))


def _train(seed: int = 0):
    return train_judge(*_loaders(seed), epochs=2, lr=1e-3, seed=seed, device="cpu", **SMALL)


@pytest.fixture(scope="module")
def trained():
    return _train(seed=0)


def test_judge_learns_a_separable_toy_problem(trained):
    model, info = trained
    assert not model.training
    assert info["epochs"] == 2 and info["val_acc"] >= 0.9 and 0 < info["train_loss"] < np.log(10)
    val = _squares(100, 1)
    logits, _ = judge_outputs(model, torch.stack([b["images"] for b in val]))
    assert (logits.argmax(1) == torch.stack([b["labels"] for b in val])).float().mean() == info["val_acc"]


def test_judge_training_is_deterministic_and_leaves_the_global_rng_alone(trained):
    before = torch.get_rng_state()
    again, info = _train(seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    reference = trained[0].state_dict()
    assert again.state_dict().keys() == reference.keys()
    assert all(torch.equal(t, reference[k]) for k, t in again.state_dict().items())
    assert info == trained[1]


def test_judge_round_trip_gives_identical_logits(trained, tmp_path):
    model, info = trained
    path = tmp_path / "judge.pt"
    save_judge(path, model, info)
    assert torch.load(path, weights_only=True)["arch"] == {"family": "diffusion", "name": "judge",
                                                           "kwargs": {"num_classes": 10, **SMALL}}
    loaded, loaded_info = load_judge(path)
    assert not loaded.training and {k: loaded_info[k] for k in info} == info
    images = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(judge_outputs(model, images), judge_outputs(loaded, images)))
    assert list(load_sealed(path)) == ["format", "arch", "state_dict", "meta"]
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: "):
        load_judge(path)


@pytest.mark.parametrize("size", [16, 28, 32])
def test_judge_features_are_the_penultimate_activations_at_any_size(size):
    model = DigitJudge(num_classes=10, width=8, feature_dim=24).train()
    images = torch.rand(7, 1, size, size, generator=torch.Generator().manual_seed(size))
    logits, features = judge_outputs(model, images, batch_size=3)  # three chunks
    assert model.training  # its mode is restored
    assert logits.shape == (7, 10) and features.shape == (7, 24) and (features >= 0).all()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(logits, model(images), atol=1e-6)
        assert torch.allclose(features, model.features(images), atol=1e-6)


def test_judge_stops_when_val_accuracy_stops_rising_and_keeps_its_best_epoch():
    # a val split the toy's rule reads only partly: accuracy plateaus below 1 and then wanders
    val = _squares(100, 1)
    for item in val[:30]:
        item["labels"] = (item["labels"] + 1) % 10
    model, info = train_judge(*_loaders(val=val), epochs=12, patience=2, lr=1e-3, seed=0, device="cpu", **SMALL)
    history = info["val_acc_history"]
    assert info["epoch_cap"] == 12 and info["patience"] == 2
    assert info["epochs"] == len(history) == info["best_epoch"] + 2 < 12  # stopped early, after 2 without a rise
    assert info["val_acc"] == pytest.approx(max(history)) and history.index(max(history)) + 1 == info["best_epoch"]
    assert evaluate_judge(model, _loaders(val=val)[1], "cpu") == pytest.approx(info["val_acc"])
    # the kept weights are those of the best epoch: a run of exactly that many epochs ends on them
    best_only, _ = train_judge(*_loaders(val=val), epochs=info["best_epoch"], lr=1e-3, seed=0, device="cpu", **SMALL)
    assert all(torch.equal(t, best_only.state_dict()[k]) for k, t in model.state_dict().items())
    assert len(info["val_acc_per_class"]) == 10


def test_class_accuracy_counts_each_class_and_none_for_an_absent_one(trained):
    model = trained[0]
    val = [b for b in _squares(100, 1) if int(b["labels"]) != 7]
    val[0] = {**val[0], "labels": (val[0]["labels"] + 1) % 10}  # one wrong label: its class loses one hit
    overall, per_class = class_accuracy(model, make_loader(val, batch_size=16, shuffle=False, workers=0, seed=0),
                                        "cpu", num_classes=10)
    images, labels = torch.stack([b["images"] for b in val]), torch.stack([b["labels"] for b in val])
    hits = judge_outputs(model, images)[0].argmax(1) == labels
    assert overall == pytest.approx(float(hits.float().mean()))
    assert per_class[7] is None
    assert per_class == pytest.approx([None if c == 7 else float(hits[labels == c].float().mean()) for c in range(10)])


def test_the_judge_ceiling_sits_beside_each_stages_cond_acc():
    judge = {"val_acc": 0.933, "val_acc_per_class": {str(d): 0.95 for d in range(10)} | {"8": 0.76, "9": 0.83},
             "epochs": 7, "best_epoch": 4, "epoch_cap": 20, "patience": 3}
    stages = {"baseline": {"metrics": {"cond_acc": 0.79}, "cond_acc_per_class": {str(d): 0.8 for d in range(10)}},
              "old": {"metrics": {"cond_acc": 0.5}}}  # a predictions file from before per-digit cond_acc
    sentence, table = judge_ceiling(judge, stages)
    assert "val split's digits at 0.933 (its best epoch, 4 of 7 run; cap 20, patience 3; weakest digits 8 0.760, " \
           "9 0.830)" in sentence
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == ["digit", "judge (val digits)", "baseline", "old"]
    assert rows[1] == ["all", "0.933", "0.790", "0.500"] and rows[1 + 1 + 8] == ["8", "0.760", "0.800", "–"]
    assert len(rows) == 12
