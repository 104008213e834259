"""How many updates each rule needs: the same numbers for validation and for a round at aggregation time."""

from __future__ import annotations

import numpy as np
import pytest

from aggregation.aggregators import aggregate, min_updates, too_few_updates


@pytest.mark.parametrize(("name", "params", "need"), [
    ("mean", {}, 1),
    ("median", {}, 1),
    ("trimmed_mean", {"beta": 0.49}, 1),  # floor(beta * N) < N / 2: at least one value is always kept
    ("centered_clipping", {"tau": 1.0, "iterations": 1}, 1),
    ("krum", {"f": 0}, 3),
    ("krum", {"f": 2}, 7),
    ("multi_krum", {"f": 1, "m": 2}, 5),
    ("multi_krum", {"f": 0, "m": 6}, 6),
    ("krum", {"f": "x"}, 1),  # malformed parameters are validation's to report
])
def test_min_updates_is_the_fewest_the_rule_accepts(name, params, need):
    # Prepare
    rng = np.random.default_rng(0)
    extra = {"center": np.zeros(3, np.float32)} if name == "centered_clipping" else {}
    # Execute / Assert
    assert min_updates(name, params) == need
    assert too_few_updates(name, params, need) is None
    if isinstance(params.get("f", 0), int):
        aggregate(name, rng.normal(size=(need, 3)).astype(np.float32), None, **params, **extra)
        if need > 1:
            with pytest.raises(ValueError):
                aggregate(name, rng.normal(size=(need - 1, 3)).astype(np.float32), None, **params)


def test_too_few_updates_says_what_to_change():
    assert too_few_updates("multi_krum", {"f": 1, "m": 6}, 5) == (
        "Multi-Krum cannot aggregate 5 updates: m=6 averages the 6 best. Raise the task's minimum number of "
        "participants to at least 6, or lower the aggregator's parameters.")
    assert too_few_updates("krum", {"f": 1}, 4) == (
        "Krum cannot aggregate 4 updates: f=1 needs at least 2f+3 = 5. Raise the task's minimum number of "
        "participants to at least 5, or lower the aggregator's parameters.")
    assert too_few_updates("mean", {}, 0) == "The round has no updates to aggregate."
