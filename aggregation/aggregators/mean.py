"""Federated averaging (McMahan et al., 2017): the sample-weighted mean, and the plain mean.

``streamed_mean`` computes either from updates read one at a time (memory-mapped frames),
never holding the N x P matrix: the round service uses it for every mean.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ._checks import as_matrix, sample_weights

_BLOCK = 1 << 17  # floats: 512 KiB, so the scratch block stays in cache


def mean(updates: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean of the rows weighted by each participant's number of samples (FedAvg)."""
    matrix = as_matrix(updates)
    w = sample_weights(weights, matrix.shape[0]).astype(np.float32)
    return w @ matrix


def plain_mean(updates: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Unweighted mean of the rows (what DISCO does); ``weights`` are ignored."""
    return as_matrix(updates).mean(axis=0, dtype=np.float32)


def _add_scaled(total: np.ndarray, vector: np.ndarray, share: float, scratch: np.ndarray) -> None:
    """``total += share * vector`` block by block: one read of ``vector`` and no temporary of its size."""
    factor = np.float32(share)
    for start in range(0, vector.size, scratch.size):
        end = min(start + scratch.size, vector.size)
        block = scratch[:end - start]
        np.multiply(vector[start:end], factor, out=block)
        total[start:end] += block


def streamed_mean(rows: Iterable[np.ndarray], shares: np.ndarray, size: int) -> np.ndarray:
    """``sum_i shares[i] * rows[i]`` over rows of ``size`` floats read one at a time (shares sum to 1)."""
    total = np.zeros(size, dtype=np.float32)
    scratch = np.empty(max(1, min(_BLOCK, size)), dtype=np.float32)
    for share, row in zip(shares, rows, strict=True):
        if row.size != size:
            raise ValueError(f"An update has {row.size} values; the model has {size}.")
        _add_scaled(total, row, float(share), scratch)
    return total
