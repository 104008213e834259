"""What one contribution may weigh and how far it may move the model: pure functions, no Django.

FedAvg (McMahan et al., 2017) weighs each update by the sample count its participant claims,
and nobody can check the claim. Three bounds keep a liar from outweighing the rest:

- ``counted_samples``: a claim above the task's ``max_samples_per_update`` counts as that many
  (clamped, not refused: an honest participant with much data still contributes);
- ``capped_shares``: no update gets more than ``max_share`` of the round's total weight; what a
  capped update loses goes to the others in proportion to their weights ("water-filling"). When
  ``max_share`` is below 1/N (few contributors) every update gets 1/N: the plain mean;
- ``update_norm``: the L2 distance of an update from the round's base model, which the round
  service compares with the task's optional ``max_update_norm`` to refuse an update outright.

The first two bound a liar's influence on a mean to ``max_share`` of the way towards its update;
only the norm bound (or a robust aggregator) bounds how far that update itself may be.
"""

from __future__ import annotations

import numpy as np

_BLOCK = 1 << 18


def counted_samples(claimed: int, max_samples: int) -> int:
    """The sample count a claim counts for: at most ``max_samples``."""
    if claimed < 1 or max_samples < 1:
        raise ValueError(f"Sample counts are at least 1 (claimed {claimed}, bound {max_samples}).")
    return min(int(claimed), int(max_samples))


def capped_shares(weights: np.ndarray, max_share: float) -> np.ndarray:
    """Normalised weights in which none exceeds ``max(max_share, 1/N)``; float64, summing to 1.

    Uncapped weights keep their proportions to each other. ``max_share`` >= 1 leaves the
    normalised weights as they are.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"Expected a non-empty vector of weights; got shape {w.shape}.")
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("Weights (sample counts) must be finite, non-negative and not all zero.")
    if not max_share > 0:
        raise ValueError(f"The largest share is a positive fraction (got {max_share}).")
    n = w.size
    cap = max(float(max_share), 1.0 / n)
    shares = w / w.sum()
    capped = np.zeros(n, dtype=bool)
    while True:
        over = ~capped & (shares > cap * (1 + 1e-12))
        if not over.any():
            break
        capped |= over
        free = 1.0 - cap * capped.sum()
        rest = np.where(capped, 0.0, w)
        if rest.sum() <= 0 or free <= 0:  # everyone is capped: equal shares
            shares = np.where(capped, cap, 0.0)
            break
        shares = np.where(capped, cap, free * rest / rest.sum())
    return shares / shares.sum()


def update_norm(update: np.ndarray, base: np.ndarray) -> float:
    """``||update - base||_2``, accumulated in float64 block by block (no temporary of the model's size)."""
    u, b = np.asarray(update).reshape(-1), np.asarray(base).reshape(-1)
    if u.shape != b.shape:
        raise ValueError(f"The update has {u.size} parameters, the base model {b.size}.")
    total = 0.0
    for start in range(0, u.size, _BLOCK):
        diff = u[start:start + _BLOCK].astype(np.float64) - b[start:start + _BLOCK]
        total += float(diff @ diff)
    return float(np.sqrt(total))
