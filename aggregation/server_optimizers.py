"""Server-side optimizers applied after aggregation (Reddi et al., "Adaptive Federated
Optimization", ICLR 2021; FedAvgM: Hsu, Qi & Brown 2019).

The aggregate of a round defines a pseudo-gradient ``delta = aggregate - global``; the
server takes a step along it with momentum (FedAvgM) or Adam (FedAdam). Pure functions:
the caller stores the returned state with the round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AdamState:
    m: np.ndarray
    v: np.ndarray
    step: int


def fedavgm(global_weights: np.ndarray, aggregate: np.ndarray, momentum: np.ndarray | None, *,
            lr: float = 1.0, beta: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """One FedAvgM step: ``m <- beta m + delta; w <- w + lr m``. Returns (new weights, new momentum)."""
    delta = aggregate - global_weights
    m = delta if momentum is None else beta * momentum + delta
    return (global_weights + lr * m).astype(np.float32), m.astype(np.float32)


def fedadam(global_weights: np.ndarray, aggregate: np.ndarray, state: AdamState | None, *, lr: float = 0.01,
            beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> tuple[np.ndarray, AdamState]:
    """One FedAdam step (no bias correction, as in Reddi et al.): returns (new weights, new state)."""
    delta = (aggregate - global_weights).astype(np.float32)
    if state is None:
        state = AdamState(np.zeros_like(delta), np.full_like(delta, tau * tau), 0)
    m = beta1 * state.m + (1 - beta1) * delta
    v = beta2 * state.v + (1 - beta2) * delta * delta
    new = global_weights + lr * m / (np.sqrt(v) + tau)
    return new.astype(np.float32), AdamState(m.astype(np.float32), v.astype(np.float32), state.step + 1)
