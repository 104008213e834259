"""Aggregation rules: pure functions on an N x P float32 matrix of updates.

Every rule has the signature ``rule(updates, weights, **params) -> vector``: ``updates``
holds one flattened model (or model delta) per row, ``weights`` the participants' sample
counts (rules that ignore them say so). No Django, no TensorFlow, no loop over
parameters: the round service decodes, calls one rule, encodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .clipping import centered_clipping
from .krum import krum, multi_krum
from .mean import mean, plain_mean
from .median import median, trimmed_mean
from .requirements import min_updates, too_few_updates

Rule = Callable[..., np.ndarray]

AGGREGATORS: dict[str, Rule] = {
    "mean": mean,
    "plain_mean": plain_mean,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "multi_krum": multi_krum,
    "centered_clipping": centered_clipping,
}


def aggregate(name: str, updates: np.ndarray, weights: np.ndarray | None = None, **params: Any) -> np.ndarray:
    """Apply the rule called ``name`` (a ``Task.aggregator`` value) with its ``params``."""
    try:
        rule = AGGREGATORS[name]
    except KeyError:
        raise ValueError(f"Unknown aggregator {name!r}; known: {', '.join(AGGREGATORS)}.") from None
    return rule(updates, weights, **params)


__all__ = ["AGGREGATORS", "aggregate", "centered_clipping", "krum", "mean", "median", "min_updates", "multi_krum",
           "plain_mean", "too_few_updates", "trimmed_mean"]
