"""Market-1501 protocol: CMC and mAP from a query × gallery distance matrix.

    dist = distance_matrix(query_feats, gallery_feats)          # L2-normalised, squared Euclidean
    metrics, per_query = market1501_metrics(dist, q_pids, g_pids, q_camids, g_camids)
    metrics == {"mAP": ..., "rank1": ..., "rank5": ..., "rank10": ...}

For each query the gallery images with the query's id *and* camera are removed (the same person
seen by the same camera is not re-identification); a query left without any true match is
skipped. Distractors (pid 0) simply never match. This is the protocol of the Market-1501 paper
(Zheng et al., ICCV 2015) as implemented in reid-strong-baseline's `eval_func`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["RANKS", "distance_matrix", "market1501_metrics"]

RANKS = (1, 5, 10)


def distance_matrix(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(nq, ng) squared Euclidean distances of L2-normalised features, i.e. 2 - 2·cosine."""
    q, g = F.normalize(query.float(), dim=1), F.normalize(gallery.float(), dim=1)
    return (2 - 2 * q @ g.T).clamp(min=0)


def market1501_metrics(dist, q_pids, g_pids, q_camids, g_camids, ranks=RANKS) -> tuple[dict[str, float], list[dict]]:
    """mAP and CMC rank-k over the valid queries; also per-query results (gallery order, AP or None if skipped)."""
    dist = np.asarray(dist, dtype=np.float64)
    q_pids, g_pids, q_camids, g_camids = (np.asarray(a) for a in (q_pids, g_pids, q_camids, g_camids))
    order = np.argsort(dist, axis=1, kind="stable")  # ties keep gallery order: results are reproducible
    cmc_sum, aps, per_query = np.zeros(len(g_pids)), [], []
    for i in range(len(q_pids)):
        ranked = order[i]
        keep = ~((g_pids[ranked] == q_pids[i]) & (g_camids[ranked] == q_camids[i]))
        ranked = ranked[keep]
        hits = g_pids[ranked] == q_pids[i]  # (n_kept,) true matches in rank order
        if not hits.any():
            per_query.append({"ranked": ranked[: max(ranks)].tolist(), "ap": None})
            continue
        first = int(np.argmax(hits))
        cmc_sum[first:] += 1  # rank-k is hit for every k beyond the first true match
        precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
        ap = float(precision_at_hits.mean())
        aps.append(ap)
        per_query.append({"ranked": ranked[: max(ranks)].tolist(), "ap": ap})
    if not aps:
        raise ValueError("no query has a true match in the gallery (after same-camera removal)")
    cmc = cmc_sum / len(aps)
    metrics = {"mAP": float(np.mean(aps))}
    metrics.update({f"rank{k}": float(cmc[min(k, len(cmc)) - 1]) for k in ranks})
    return metrics, per_query
