"""Centered clipping (Karimireddy, He & Jaggi, "Learning from History for Byzantine Robust
Optimization", ICML 2021).

Starting from a center ``v`` (the previous aggregate, or the coordinate-wise median),
repeat: ``v <- v + mean_i clip_tau(x_i - v)`` where ``clip_tau`` scales a vector down to
L2 norm ``tau``. Outliers move the center by at most ``tau / N`` each per iteration.

Each iteration reads the updates twice, a block of coordinates at a time: once to sum each
``||x_i - v||^2`` over the blocks, then, the scales known, once for the clipped mean. Memory is
bounded by the source's block, not by N x P.
"""

from __future__ import annotations

import numpy as np

from .median import median
from .source import UpdateSource, as_source, blocks


def centered_clipping(updates: np.ndarray | UpdateSource, weights: np.ndarray | None = None, *, tau: float,
                      iterations: int = 3, center: np.ndarray | None = None) -> np.ndarray:
    """Robust mean of the rows around ``center`` (default: the coordinate-wise median)."""
    source = as_source(updates)
    n = source.count
    if tau <= 0 or iterations < 1:
        raise ValueError(f"Centered clipping needs tau > 0 and iterations >= 1; got tau={tau}, "
                         f"iterations={iterations}.")
    v = (median(source) if center is None else np.asarray(center)).astype(np.float32)
    if v.shape != (source.size,):
        raise ValueError(f"The center must have {source.size} values; got shape {v.shape}.")
    for _ in range(int(iterations)):
        squares = np.zeros(n, dtype=np.float64)
        for start, stop, block in blocks(source, copies=2):  # the block and its difference to the center
            diff = block - v[start:stop]
            squares += np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
        norms = np.sqrt(squares)
        scale = np.minimum(1.0, tau / np.maximum(norms, 1e-12)).astype(np.float32)
        moved = np.empty_like(v)
        for start, stop, block in blocks(source, copies=2):
            diff = block - v[start:stop]
            moved[start:stop] = v[start:stop] + (scale @ diff) / n
        v = moved
    return v
