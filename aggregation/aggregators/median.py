"""Coordinate-wise median and trimmed mean (Yin, Chen, Ramchandran & Bartlett, ICML 2018).

Both ignore sample counts: weighting would let one participant claim many samples. Each
coordinate is independent of the others, so both read the updates a block of coordinates at a
time (``source.blocks``) and never hold the N x P matrix; a block's result equals the whole
matrix's on those coordinates.
"""

from __future__ import annotations

import math

import numpy as np

from .source import UpdateSource, as_source, blocks


def median(updates: np.ndarray | UpdateSource, weights: np.ndarray | None = None) -> np.ndarray:
    """The median of each coordinate over the participants."""
    source = as_source(updates)
    out = np.empty(source.size, dtype=np.float32)
    for start, stop, block in blocks(source, copies=2):  # np.median partitions a copy of the block
        out[start:stop] = np.median(block, axis=0)
    return out


def trimmed_mean(updates: np.ndarray | UpdateSource, weights: np.ndarray | None = None, *,
                 beta: float = 0.1) -> np.ndarray:
    """Per coordinate, drop the ``floor(beta * N)`` largest and smallest values and average the rest."""
    source = as_source(updates)
    n = source.count
    if not 0 <= beta < 0.5:
        raise ValueError(f"Trimmed mean needs 0 <= beta < 0.5; got {beta}.")
    k = math.floor(beta * n)
    out = np.empty(source.size, dtype=np.float32)
    for start, stop, block in blocks(source, copies=3):  # the partition's copy and the mean's of its middle
        if k == 0:
            out[start:stop] = block.mean(axis=0, dtype=np.float32)
            continue
        # Partition once: the k smallest and k largest of each column move to the ends.
        part = np.partition(block, (k - 1, n - k), axis=0)
        out[start:stop] = part[k:n - k].mean(axis=0, dtype=np.float32)
    return out
