"""Federated averaging (McMahan et al., 2017): the sample-weighted mean, and the plain mean."""

from __future__ import annotations

import numpy as np

from ._checks import as_matrix, sample_weights


def mean(updates: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean of the rows weighted by each participant's number of samples (FedAvg)."""
    matrix = as_matrix(updates)
    w = sample_weights(weights, matrix.shape[0]).astype(np.float32)
    return w @ matrix


def plain_mean(updates: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Unweighted mean of the rows (what DISCO does); ``weights`` are ignored."""
    return as_matrix(updates).mean(axis=0, dtype=np.float32)
