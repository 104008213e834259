"""Aggregation rules: pure functions on an N x P float32 matrix of updates.

Every rule has the signature ``rule(updates, weights, **params) -> vector``: ``updates``
holds one flattened model (or model delta) per row, ``weights`` the participants' sample
counts (rules that ignore them say so). No Django, no TensorFlow, no loop over
parameters: the round service decodes, calls one rule, encodes.

``registry`` describes every rule a task can choose (name, label, parameters) and the
server optimizers; everything else derives from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .clipping import centered_clipping
from .krum import krum, multi_krum
from .mean import mean, plain_mean, streamed_mean
from .median import median, trimmed_mean
from .registry import AGGREGATORS as REGISTRY
from .registry import SERVER_OPTIMIZERS, AggregatorSpec, Param, ServerOptimizerSpec
from .requirements import min_updates, too_few_updates

# The matrix rules by name (the registry's entries that have one).
AGGREGATORS = {name: spec.rule for name, spec in REGISTRY.items() if spec.rule is not None}


def aggregate(name: str, updates: np.ndarray, weights: np.ndarray | None = None, **params: Any) -> np.ndarray:
    """Apply the rule called ``name`` (a ``Task.aggregator`` value) with its ``params``."""
    rule = AGGREGATORS.get(name)
    if rule is None:
        raise ValueError(f"Unknown aggregator {name!r}; known: {', '.join(AGGREGATORS)}.")
    return rule(updates, weights, **params)


__all__ = ["AGGREGATORS", "REGISTRY", "SERVER_OPTIMIZERS", "AggregatorSpec", "Param", "ServerOptimizerSpec",
           "aggregate", "centered_clipping", "krum", "mean", "median", "min_updates", "multi_krum", "plain_mean",
           "streamed_mean", "too_few_updates", "trimmed_mean"]
