"""The pure bounds on one contribution: counted samples, capped shares, update norms."""

from __future__ import annotations

import numpy as np
import pytest

from aggregation.aggregators.bounds import capped_shares, counted_samples, update_norm


def test_sample_claims_are_clamped():
    assert counted_samples(10, 100) == 10
    assert counted_samples(10**9, 100_000) == 100_000
    with pytest.raises(ValueError, match="at least 1"):
        counted_samples(0, 10)


def test_no_share_exceeds_the_cap_and_the_rest_keep_their_proportions():
    # Prepare: one liar among five honest participants.
    weights = np.array([100, 200, 100, 100, 10**9, 100])
    # Execute
    shares = capped_shares(weights, 0.25)
    # Assert
    assert shares.sum() == pytest.approx(1.0)
    assert shares[4] == pytest.approx(0.25)
    honest = np.delete(shares, 4)
    np.testing.assert_allclose(honest, 0.75 * np.array([100, 200, 100, 100, 100]) / 600)


def test_water_filling_caps_everyone_who_would_exceed_it():
    shares = capped_shares(np.array([1000, 1000, 1, 1, 1, 1]), 0.3)
    np.testing.assert_allclose(shares, [0.3, 0.3, 0.1, 0.1, 0.1, 0.1])


def test_with_few_contributors_the_cap_gives_the_plain_mean():
    np.testing.assert_allclose(capped_shares(np.array([10, 30]), 0.25), [0.5, 0.5])
    np.testing.assert_allclose(capped_shares(np.array([1, 10**9, 5, 5]), 0.25), [0.25] * 4)


def test_a_share_of_one_is_plain_fedavg():
    np.testing.assert_allclose(capped_shares(np.array([10, 30]), 1.0), [0.25, 0.75])


@pytest.mark.parametrize("weights", [np.array([]), np.array([1, -1]), np.array([0, 0]), np.array([1, np.inf])])
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError):
        capped_shares(weights, 0.5)


def test_update_norm_is_the_l2_distance():
    base = np.zeros(600_000, np.float32)
    update = base.copy()
    update[:4] = [3, 4, 0, 12]
    assert update_norm(update, base) == pytest.approx(13.0)
    with pytest.raises(ValueError, match="parameters"):
        update_norm(update[:3], base)
