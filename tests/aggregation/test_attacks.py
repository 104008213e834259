"""Byzantine attacks of the simulator: hand-computed cases on tiny vectors."""

from __future__ import annotations

import numpy as np
import pytest

from aggregation.aggregators import mean, median
from aggregation.attacks import ATTACKS, alie, alie_z, attack, ipm, noise, scale, sign_flip

BASE = np.array([1.0, 1.0, 1.0], dtype=np.float32)
UPDATE = np.array([2.0, 0.0, 1.0], dtype=np.float32)  # delta (1, -1, 0)
HONEST = np.array([[2.0, 1.0, 1.0], [4.0, 1.0, 3.0]], dtype=np.float32)  # deltas (1, 0, 0), (3, 0, 2)


def test_sign_flip_and_scale_by_hand():
    np.testing.assert_allclose(sign_flip(UPDATE, BASE, strength=2.0), [-1.0, 3.0, 1.0])
    np.testing.assert_allclose(sign_flip(UPDATE, BASE), [-3.0, 5.0, 1.0])  # default s = 4
    np.testing.assert_allclose(scale(UPDATE, BASE, strength=3.0), [4.0, -2.0, 1.0])
    assert sign_flip(UPDATE, BASE).dtype == np.float32


def test_noise_has_the_update_scale_times_strength():
    rng = np.random.default_rng(0)
    base = np.zeros(20000, dtype=np.float32)
    update = np.full(20000, 0.5, dtype=np.float32)  # rms of the delta: 0.5
    sent = noise(update, base, strength=4.0, rng=rng)
    assert abs(sent.mean()) < 0.05
    assert sent.std() == pytest.approx(2.0, rel=0.03)
    again = noise(update, base, strength=4.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(sent, again)  # seeded


def test_alie_is_mean_minus_z_std_of_honest_deltas():
    # honest deltas: mean (2, 0, 1), std (1, 0, 1)
    np.testing.assert_allclose(alie(UPDATE, BASE, HONEST, strength=1.5), [1 + 2 - 1.5, 1.0, 1 + 1 - 1.5])


def test_alie_default_z_is_the_papers_z_max():
    # n = 10, f = 2: s = floor(6) - 2 = 4, z = Phi^-1(6/10) = 0.2533
    assert alie_z(10, 2) == pytest.approx(0.2533, abs=1e-4)
    # n = 50, f = 12: s = 14, z = Phi^-1(36/50) = 0.5828
    assert alie_z(50, 12) == pytest.approx(0.5828, abs=1e-4)
    sent = alie(UPDATE, BASE, HONEST, attackers=2)  # 2 honest + 2 attackers: s = 1, z = Phi^-1(3/4)
    np.testing.assert_allclose(sent, [3 - 0.6745, 1.0, 2 - 0.6745], atol=1e-4)


def test_ipm_is_minus_epsilon_times_the_honest_mean():
    np.testing.assert_allclose(ipm(UPDATE, BASE, HONEST, strength=0.5), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(ipm(UPDATE, BASE, HONEST), [-19.0, 1.0, -9.0])  # default epsilon 10


def test_attacks_that_read_honest_updates_need_them():
    for name in ("alie", "ipm"):
        with pytest.raises(ValueError, match=f"The {name} attack needs at least one honest update"):
            attack(name, UPDATE, BASE, np.zeros((0, 3)), rng=np.random.default_rng(0))


def test_unknown_attack_and_shape_mismatch_are_named():
    with pytest.raises(ValueError, match="Unknown attack 'flood'; known: noise, sign_flip, scale, alie, ipm"):
        attack("flood", UPDATE, BASE, None, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="The update has 2 values but the base model 3"):
        sign_flip(UPDATE[:2], BASE)


def test_two_attackers_in_ten_move_the_mean_but_not_the_median():
    rng = np.random.default_rng(1)
    base = np.zeros(50, dtype=np.float32)
    honest = (1.0 + 0.1 * rng.normal(size=(8, 50))).astype(np.float32)  # every honest delta near +1
    for name in ATTACKS:
        if name == "alie":
            continue  # by design ALIE stays within the honest spread: it moves the median too
        sent = np.stack([attack(name, honest[i], base, honest, rng=rng, attackers=2) for i in range(2)])
        updates = np.vstack([honest, sent])
        mean_error = np.abs(mean(updates) - honest.mean(axis=0)).mean()
        median_error = np.abs(median(updates) - honest.mean(axis=0)).mean()
        assert mean_error > 0.5, name
        assert median_error < 0.15, name
