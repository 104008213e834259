"""Coordinate-wise median and trimmed mean (Yin, Chen, Ramchandran & Bartlett, ICML 2018).

Both ignore sample counts: weighting would let one participant claim many samples.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_matrix


def median(updates: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The median of each coordinate over the participants."""
    return np.median(as_matrix(updates), axis=0).astype(np.float32, copy=False)


def trimmed_mean(updates: np.ndarray, weights: np.ndarray | None = None, *, beta: float = 0.1) -> np.ndarray:
    """Per coordinate, drop the ``floor(beta * N)`` largest and smallest values and average the rest."""
    matrix = as_matrix(updates)
    n = matrix.shape[0]
    if not 0 <= beta < 0.5:
        raise ValueError(f"Trimmed mean needs 0 <= beta < 0.5; got {beta}.")
    k = math.floor(beta * n)
    if k == 0:
        return matrix.mean(axis=0, dtype=np.float32)
    # Partition once: the k smallest and k largest of each column move to the ends.
    part = np.partition(matrix, (k - 1, n - k), axis=0)
    return part[k:n - k].mean(axis=0, dtype=np.float32)
