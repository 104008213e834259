"""disco_client/privacy.py: clipping bounds the norm, the noise has standard deviation z*C (not (z*C)**2)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from disco_client.privacy import clip_l2, privatize, privatize_weights


def test_clipping_bounds_the_norm_and_keeps_the_direction():
    rng = np.random.default_rng(0)
    for size in (1, 10, 100_000):
        delta = rng.normal(0, 5, size=size).astype(np.float32)
        clipped = clip_l2(delta, 0.5)
        norm = np.linalg.norm(clipped.astype(np.float64))
        assert clipped.dtype == np.float32
        assert norm <= 0.5 and norm == pytest.approx(0.5, rel=1e-6)
        cosine = np.dot(clipped.astype(np.float64), delta) / norm / np.linalg.norm(delta.astype(np.float64))
        assert cosine == pytest.approx(1.0, abs=1e-6)


def test_small_updates_are_not_scaled_up():
    delta = np.array([0.3, -0.4], np.float32)  # norm 0.5
    np.testing.assert_array_equal(clip_l2(delta, 1.0), delta)
    np.testing.assert_array_equal(clip_l2(np.zeros(3, np.float32), 1.0), np.zeros(3))
    np.testing.assert_array_equal(privatize(delta, 1.0, 0.0), delta)  # z = 0: clipping only


@pytest.mark.parametrize(("clip", "z"), [(2.0, 0.75), (0.1, 1.1)])
def test_noise_has_the_configured_standard_deviation(clip, z):
    size, std = 200_000, z * clip
    delta = np.zeros(size, np.float32)
    noise = privatize(delta, clip, z, rng=np.random.default_rng(42)).astype(np.float64)
    # Sample std of n normal values has standard error std / sqrt(2n): 1% is over 6 of them here.
    assert noise.std() == pytest.approx(std, rel=0.01)
    assert abs(noise.mean()) < 6 * std / np.sqrt(size)
    assert abs(noise.std() - std**2) > 0.1 * std  # not DISCO's squared value
    assert stats.kstest(noise / std, "norm").pvalue > 1e-3  # and it is Gaussian


def test_noise_is_added_after_clipping_and_is_fresh_each_time():
    delta = np.full(100_000, 10.0, np.float32)
    clipped = clip_l2(delta, 1.0)
    private = privatize(delta, 1.0, 0.5)
    assert (private - clipped).std() == pytest.approx(0.5, rel=0.02)
    assert not np.array_equal(private, privatize(delta, 1.0, 0.5))


def test_privatize_weights_shares_round_start_plus_private_delta():
    start = np.linspace(-1, 1, 1000, dtype=np.float32)
    weights = start + np.float32(0.01)  # a change of norm ~0.32
    np.testing.assert_allclose(privatize_weights(weights, start, 1.0, 0.0), weights, atol=1e-7)
    far = start + np.float32(3.0)  # norm ~95: clipped to 0.2
    shared = privatize_weights(far, start, 0.2, 0.0)
    assert np.linalg.norm((shared - start).astype(np.float64)) == pytest.approx(0.2, rel=1e-4)
    with pytest.raises(ValueError, match="shape \\(3,\\) but the round started from \\(2,\\)"):
        privatize_weights(np.zeros(3), np.zeros(2), 1.0, 1.0)


@pytest.mark.parametrize(("clip", "z", "message"), [
    (0.0, 1.0, "clipping radius is a positive number"), (-1.0, 1.0, "clipping radius"),
    (float("nan"), 1.0, "clipping radius"), (1.0, -0.5, "noise scale is zero or a positive number"),
    (1.0, float("inf"), "noise scale")])
def test_bad_settings_are_refused(clip, z, message):
    with pytest.raises(ValueError, match=message):
        privatize(np.zeros(2, np.float32), clip, z)


def test_non_finite_updates_are_refused():
    with pytest.raises(ValueError, match="NaN or infinite"):
        clip_l2(np.array([1.0, np.inf], np.float32), 1.0)
