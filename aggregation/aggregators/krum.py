"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, NeurIPS 2017).

Each update is scored by the sum of squared distances to its ``N - f - 2`` nearest
neighbours; Krum returns the best-scored update, Multi-Krum the mean of the ``m`` best.
Preconditions: ``N >= 2f + 3``.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_matrix


def _scores(matrix: np.ndarray, f: int) -> np.ndarray:
    n = matrix.shape[0]
    if f < 0 or n < 2 * f + 3:
        raise ValueError(f"Krum with f={f} needs at least 2f+3 = {2 * f + 3} updates; got {n}.")
    x = matrix.astype(np.float64, copy=False)
    sq = np.einsum("ij,ij->i", x, x)
    dist = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)  # pairwise squared distances via the Gram matrix
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, np.inf)
    neighbours = n - f - 2
    nearest = np.partition(dist, neighbours - 1, axis=1)[:, :neighbours]
    return nearest.sum(axis=1)


def krum(updates: np.ndarray, weights: np.ndarray | None = None, *, f: int) -> np.ndarray:
    """The single update closest to its neighbours."""
    matrix = as_matrix(updates)
    return matrix[int(np.argmin(_scores(matrix, int(f))))].copy()


def multi_krum(updates: np.ndarray, weights: np.ndarray | None = None, *, f: int, m: int) -> np.ndarray:
    """The mean of the ``m`` updates with the best Krum scores."""
    matrix = as_matrix(updates)
    if not 1 <= m <= matrix.shape[0]:
        raise ValueError(f"Multi-Krum needs 1 <= m <= N = {matrix.shape[0]}; got m={m}.")
    best = np.argsort(_scores(matrix, int(f)), kind="stable")[: int(m)]
    return matrix[best].mean(axis=0, dtype=np.float32)
