"""Centered clipping (Karimireddy, He & Jaggi, "Learning from History for Byzantine Robust
Optimization", ICML 2021).

Starting from a center ``v`` (the previous aggregate, or the coordinate-wise median),
repeat: ``v <- v + mean_i clip_tau(x_i - v)`` where ``clip_tau`` scales a vector down to
L2 norm ``tau``. Outliers move the center by at most ``tau / N`` each per iteration.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_matrix


def centered_clipping(updates: np.ndarray, weights: np.ndarray | None = None, *, tau: float, iterations: int = 3,
                      center: np.ndarray | None = None) -> np.ndarray:
    """Robust mean of the rows around ``center`` (default: the coordinate-wise median)."""
    matrix = as_matrix(updates)
    if tau <= 0 or iterations < 1:
        raise ValueError(f"Centered clipping needs tau > 0 and iterations >= 1; got tau={tau}, "
                         f"iterations={iterations}.")
    v = (np.median(matrix, axis=0) if center is None else np.asarray(center)).astype(np.float32)
    if v.shape != (matrix.shape[1],):
        raise ValueError(f"The center must have {matrix.shape[1]} values; got shape {v.shape}.")
    for _ in range(int(iterations)):
        diff = matrix - v
        norms = np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))
        scale = np.minimum(1.0, tau / np.maximum(norms, 1e-12)).astype(np.float32)
        v = v + (scale @ diff) / matrix.shape[0]
    return v
