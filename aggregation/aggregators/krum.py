"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, NeurIPS 2017).

Each update is scored by the sum of squared distances to its ``N - f - 2`` nearest
neighbours; Krum returns the best-scored update, Multi-Krum the mean of the ``m`` best.
Preconditions: ``N >= 2f + 3``.

The pairwise distances need only the N x N Gram matrix (2 MB at N=500), which is a sum over
coordinates: it is accumulated in float64 one block of coordinates at a time, so the N x P
updates are never held (nor their float64 copy). The result is read back from the source.
"""

from __future__ import annotations

import numpy as np

from .source import UpdateSource, as_source, blocks, row


def _scores(source: UpdateSource, f: int) -> np.ndarray:
    n = source.count
    if f < 0 or n < 2 * f + 3:
        raise ValueError(f"Krum with f={f} needs at least 2f+3 = {2 * f + 3} updates; got {n}.")
    gram = np.zeros((n, n), dtype=np.float64)
    sq = np.zeros(n, dtype=np.float64)
    for _, _, block in blocks(source, copies=3):  # the block and its float64 copy
        x = block.astype(np.float64)
        sq += np.einsum("ij,ij->i", x, x)
        gram += x @ x.T
        del x
    dist = sq[:, None] + sq[None, :] - 2.0 * gram  # pairwise squared distances via the Gram matrix
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, np.inf)
    neighbours = n - f - 2
    nearest = np.partition(dist, neighbours - 1, axis=1)[:, :neighbours]
    return nearest.sum(axis=1)


def krum(updates: np.ndarray | UpdateSource, weights: np.ndarray | None = None, *, f: int) -> np.ndarray:
    """The single update closest to its neighbours."""
    source = as_source(updates)
    return row(source, int(np.argmin(_scores(source, int(f)))))


def multi_krum(updates: np.ndarray | UpdateSource, weights: np.ndarray | None = None, *, f: int,
               m: int) -> np.ndarray:
    """The mean of the ``m`` updates with the best Krum scores."""
    source = as_source(updates)
    if not 1 <= m <= source.count:
        raise ValueError(f"Multi-Krum needs 1 <= m <= N = {source.count}; got m={m}.")
    best = [int(i) for i in np.argsort(_scores(source, int(f)), kind="stable")[: int(m)]]
    out = np.empty(source.size, dtype=np.float32)
    for start, stop, block in blocks(source, rows=best):
        out[start:stop] = block.mean(axis=0, dtype=np.float32)
    return out
