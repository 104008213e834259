"""Aggregation rules: pure functions on N updates of P float32 values.

Every rule has the signature ``rule(updates, weights, **params) -> vector``: ``updates`` is an
N x P matrix (one flattened model, or model delta, per row) or an ``UpdateSource`` that hands
out blocks of coordinates (``source.py``: the round's stored frames, read a block at a time so
that no rule holds the N x P matrix); ``weights`` are the participants' sample counts (rules that
ignore them say so). No Django, no TensorFlow: the round service opens the frames, calls one
rule, encodes.

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
from .source import MatrixSource, UpdateSource

# The matrix rules by name (the registry's entries that have one).
AGGREGATORS = {name: spec.rule for name, spec in REGISTRY.items() if spec.rule is not None}


def aggregate(name: str, updates: np.ndarray | UpdateSource, weights: np.ndarray | None = None,
              **params: Any) -> np.ndarray:
    """Apply the rule called ``name`` (a ``Task.aggregator`` value) with its ``params``."""
    rule = AGGREGATORS.get(name)
    if rule is None:
        raise ValueError(f"Unknown aggregator {name!r}; known: {', '.join(AGGREGATORS)}.")
    return rule(updates, weights, **params)


__all__ = ["AGGREGATORS", "REGISTRY", "SERVER_OPTIMIZERS", "AggregatorSpec", "MatrixSource", "Param",
           "ServerOptimizerSpec", "UpdateSource", "aggregate", "centered_clipping", "krum", "mean", "median",
           "min_updates", "multi_krum", "plain_mean", "streamed_mean", "too_few_updates", "trimmed_mean"]
