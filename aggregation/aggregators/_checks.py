"""Shared preconditions of the aggregation rules."""

from __future__ import annotations

import numpy as np


def as_matrix(updates: np.ndarray) -> np.ndarray:
    """``updates`` as a finite 2-D float32 matrix with at least one row (no copy when it already is one)."""
    matrix = np.asarray(updates, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"Updates must be an N x P matrix with N >= 1; got shape {matrix.shape}.")
    return matrix


def sample_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """Normalised non-negative weights, equal ones when ``weights`` is None."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"Expected {n} weights, one per update; got shape {w.shape}.")
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("Weights (sample counts) must be finite, non-negative and not all zero.")
    return w / w.sum()
