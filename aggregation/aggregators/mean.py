"""Federated averaging (McMahan et al., 2017): the sample-weighted mean, and the plain mean.

``streamed_mean`` computes either from updates read one at a time (the stored frames, one
P-vector at a time), never holding the N x P matrix: the round service uses it for every mean.
``mean`` and ``plain_mean`` take a matrix or any ``UpdateSource`` (read by blocks of coordinates).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ._checks import sample_weights
from .source import UpdateSource, as_source, blocks

_BLOCK = 1 << 17  # floats: 512 KiB, so the scratch block stays in cache


def mean(updates: np.ndarray | UpdateSource, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean of the rows weighted by each participant's number of samples (FedAvg)."""
    source = as_source(updates)
    w = sample_weights(weights, source.count).astype(np.float32)
    out = np.empty(source.size, dtype=np.float32)
    for start, stop, block in blocks(source):
        out[start:stop] = w @ block
    return out


def plain_mean(updates: np.ndarray | UpdateSource, weights: np.ndarray | None = None) -> np.ndarray:
    """Unweighted mean of the rows (what DISCO does); ``weights`` are ignored."""
    source = as_source(updates)
    out = np.empty(source.size, dtype=np.float32)
    for start, stop, block in blocks(source):
        out[start:stop] = block.mean(axis=0, dtype=np.float32)
    return out


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
