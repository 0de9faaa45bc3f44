"""Fréchet distance between two Gaussians fitted to feature sets (FID's formula on any features).

    mu_a, sigma_a = feature_stats(judge_features_of_samples)     # (N, D) → (D,), (D, D)
    mu_b, sigma_b = feature_stats(judge_features_of_val_split)
    fid = frechet_distance(mu_a, sigma_a, mu_b, sigma_b)          # float ≥ 0; 0 for identical statistics

d² = ||mu1 − mu2||² + Tr(sigma1 + sigma2 − 2 (sigma1 sigma2)^½), computed as pytorch-fid computes
FID (scipy.linalg.sqrtm of the product, eps·I added to both covariances when the product is
singular). The diffusion family feeds it the digit judge's penultimate features instead of
Inception's: nothing may be downloaded, and Inception knows nothing of 28-pixel digits.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

__all__ = ["feature_stats", "frechet_distance"]

_EPS = 1e-6  # the diagonal offset pytorch-fid adds when sqrtm of the product fails
_SQRTM_RTOL = 1e-5  # ||X @ X − A||_F / ||A||_F above this: sqrtm did not find a root (singular product)
_IMAG_RTOL = 1e-3  # an imaginary part this large (relative to the root's scale) is not round-off
_NEG_RTOL = 1e-6  # a negative distance this large (relative to the traces) is not round-off


def feature_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features, float64; N ≥ 2 (unbiased covariance)."""
    x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    x = x.astype(np.float64, copy=False)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinity")
    # atleast_2d: np.cov of a single feature column is a 0-d array
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _sqrtm(a: np.ndarray) -> np.ndarray | None:
    """scipy's square root of `a`, or None when it is not finite or not a root of `a` (singular `a`)."""
    with warnings.catch_warnings():
        # "Matrix is singular": the result is checked below instead of trusting or printing the warning
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(a)
    if not np.isfinite(root).all():
        return None
    scale = max(np.linalg.norm(a), np.finfo(np.float64).tiny)
    return root if np.linalg.norm(root @ root - a) / scale <= _SQRTM_RTOL else None


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); a Python float ≥ 0."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shapes do not fit: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, "
                         f"sigma2 {sigma2.shape} (expected (D,) and (D, D))")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("statistics contain NaN or infinity")
    root = _sqrtm(sigma1 @ sigma2)
    if root is None:  # singular product (e.g. fewer samples than features, dead units): regularise as pytorch-fid
        offset = _EPS * np.eye(d)
        root = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if root is None:
            raise ValueError("sigma1 @ sigma2 has no accurate square root even with eps*I added; "
                             "are both covariances positive semi-definite?")
    diagonal = np.diagonal(root)  # only the trace is needed
    if np.iscomplexobj(diagonal):
        # the product of two PSD matrices has real eigenvalues ≥ 0; round-off pushes some slightly negative,
        # giving imaginary parts. Only the diagonal's count: with many zero eigenvalues (dead units, fewer
        # samples than features) the off-diagonal ones can be large while the trace stays real.
        imag = np.abs(diagonal.imag).max()
        if imag > _IMAG_RTOL * max(1.0, np.abs(diagonal.real).max()):
            raise ValueError(f"the square root of sigma1 @ sigma2 has an imaginary diagonal of {imag:.3g}; "
                             "are both covariances positive semi-definite?")
        diagonal = diagonal.real
    diff = mu1 - mu2
    scale = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2))
    value = scale - 2.0 * float(diagonal.sum())
    # ≥ 0 in exact arithmetic; round-off leaves tiny negatives for equal inputs, a large one means bad input
    if value < -_NEG_RTOL * max(abs(scale), 1.0):
        raise ValueError(f"Fréchet distance came out negative ({value:.3g}); "
                         "are both covariances positive semi-definite?")
    return max(value, 0.0)
