"""ReID losses and the Market-1501 protocol on hand-computed cases."""
import numpy as np
import pytest
import torch

from pipeline_lib.tasks.reid.evaluate import distance_matrix, market1501_metrics
from pipeline_lib.tasks.reid.loss import CenterLoss, ReIDLoss, hard_example_mining, pairwise_distance, triplet_loss

LABELS = torch.tensor([0, 0, 1, 1])
DIST = torch.tensor([[0., 2., 1., 5.],
                     [2., 0., 3., 4.],
                     [1., 3., 0., 6.],
                     [5., 4., 6., 0.]])


def test_batch_hard_mining_picks_farthest_positive_and_nearest_negative():
    d_ap, d_an = hard_example_mining(DIST, LABELS)
    assert d_ap.tolist() == [2., 2., 6., 6.]
    assert d_an.tolist() == [1., 3., 1., 4.]


def test_triplet_loss_on_features_with_known_distances():
    feat = torch.tensor([[0.], [2.], [1.], [5.]])  # 1-D features: distances are |xi - xj|
    assert torch.allclose(pairwise_distance(feat), (feat - feat.T).abs(), atol=1e-5)
    # anchors: (ap, an) = (2, 1), (2, 1), (4, 1), (4, 3) -> relu(ap - an + 0.3)
    expected = np.mean([1.3, 1.3, 3.3, 1.3])
    assert triplet_loss(feat, LABELS, margin=0.3).item() == pytest.approx(expected, abs=1e-5)
    far = torch.tensor([[0.], [0.1], [10.], [10.1]])
    assert triplet_loss(far, LABELS, margin=0.3).item() == 0.0  # every negative beyond the margin


def test_triplet_gradient_is_finite_at_zero_distance():
    feat = torch.zeros(4, 8, requires_grad=True)
    triplet_loss(feat, LABELS, 0.3).backward()
    assert torch.isfinite(feat.grad).all()


def test_reid_loss_combines_label_smoothed_ce_triplet_and_center():
    torch.manual_seed(0)
    logits, feat = torch.randn(4, 3), torch.randn(4, 5)
    hyp = {"id": 1.0, "triplet": 2.0, "margin": 0.3, "label_smoothing": 0.1, "center": 0.5, "center_alpha": 0.5}
    loss_fn = ReIDLoss(3, 5, hyp)
    total, items = loss_fn(logits, feat, LABELS)
    ce = torch.nn.functional.cross_entropy(logits, LABELS, label_smoothing=0.1)
    # Centres start at 0: the first center loss is half the mean squared norm.
    center = feat.pow(2).sum(1).mean() / 2
    assert total.item() == pytest.approx((ce + 2 * triplet_loss(feat, LABELS, 0.3) + 0.5 * center).item(), rel=1e-5)
    assert set(items) == {"id", "triplet", "acc", "center"}
    # Wen et al.'s update: c_j <- c_j - alpha * sum(c_j - x_i) / (1 + n_j)
    assert torch.allclose(loss_fn.center.centers[0], 0.5 * feat[:2].sum(0) / 3)


def test_center_loss_pulls_centres_towards_class_means():
    loss = CenterLoss(2, 2, alpha=0.5)
    feat = torch.tensor([[1., 1.], [1., 1.], [-1., 0.], [-1., 0.]])
    for _ in range(30):
        loss(feat, LABELS)
    assert torch.allclose(loss.centers, torch.tensor([[1., 1.], [-1., 0.]]), atol=1e-3)


# Gallery:        g0        g1        g2        g3            g4
G_PIDS = np.array([1, 2, 1, 0, 1])  # g3 is a distractor
G_CAMS = np.array([1, 2, 2, 3, 3])


def test_market_protocol_removes_same_camera_and_skips_unmatched_queries():
    q_pids, q_cams = np.array([1, 3, 2]), np.array([1, 1, 1])
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4],   # q0: g0 (same id, same camera) is removed; hits at ranks 2 and 4
                     [0.1, 0.2, 0.3, 0.4, 0.5],   # q1: id 3 is not in the gallery -> skipped
                     [0.5, 0.0, 0.3, 0.2, 0.1]])  # q2: its only match g1 is first
    metrics, per_query = market1501_metrics(dist, q_pids, G_PIDS, q_cams, G_CAMS)
    ap_q0 = (1 / 2 + 2 / 4) / 2
    assert metrics == pytest.approx({"mAP": (ap_q0 + 1.0) / 2, "rank1": 0.5, "rank5": 1.0, "rank10": 1.0})
    assert per_query[0]["ranked"] == [1, 2, 3, 4] and per_query[1]["ap"] is None
    # Without same-camera removal q0 would be a rank-1 hit: the protocol is what makes it 0.
    same_cam_kept, _ = market1501_metrics(dist, q_pids, G_PIDS, np.array([9, 9, 9]), G_CAMS)
    assert same_cam_kept["rank1"] == 1.0


def test_cmc_counts_the_first_true_match():
    g_pids, g_cams = np.arange(1, 13), np.full(12, 2)
    dist = np.tile(np.arange(12.0), (3, 1))
    q_pids = np.array([1, 6, 12])  # first matches at ranks 1, 6 and 12
    metrics, _ = market1501_metrics(dist, q_pids, g_pids, np.ones(3), g_cams)
    assert metrics["rank1"] == pytest.approx(1 / 3) and metrics["rank5"] == pytest.approx(1 / 3)
    assert metrics["rank10"] == pytest.approx(2 / 3)
    assert metrics["mAP"] == pytest.approx((1 + 1 / 6 + 1 / 12) / 3)


def test_no_valid_query_is_an_error():
    with pytest.raises(ValueError, match="no query has a true match"):
        market1501_metrics(np.zeros((1, 5)), np.array([7]), G_PIDS, np.array([1]), G_CAMS)


def test_distance_matrix_is_squared_euclidean_of_unit_features():
    q, g = torch.tensor([[3., 0.]]), torch.tensor([[2., 0.], [0., 5.], [-1., 0.]])
    assert torch.allclose(distance_matrix(q, g), torch.tensor([[0., 2., 4.]]))
