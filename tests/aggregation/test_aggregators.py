"""Aggregation rules: hand-computed cases, preconditions, and robustness against 20% attackers."""

from __future__ import annotations

import numpy as np
import pytest

from aggregation.aggregators import AGGREGATORS, aggregate, centered_clipping, krum, median, multi_krum, trimmed_mean
from aggregation.aggregators.mean import mean, plain_mean
from aggregation.server_optimizers import fedadam, fedavgm

X = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [100.0, -100.0]], dtype=np.float32)


def test_weighted_and_plain_mean():
    updates = np.array([[0.0, 2.0], [4.0, 6.0]], dtype=np.float32)
    np.testing.assert_allclose(mean(updates, np.array([1, 3])), [3.0, 5.0])
    np.testing.assert_allclose(mean(updates), [2.0, 4.0])
    np.testing.assert_allclose(plain_mean(updates, np.array([1, 3])), [2.0, 4.0])
    assert mean(updates).dtype == np.float32


def test_median_and_trimmed_mean_by_hand():
    np.testing.assert_allclose(median(X), [3.0, 20.0])
    # beta=0.2, N=5: drop one smallest and one largest per coordinate.
    np.testing.assert_allclose(trimmed_mean(X, beta=0.2), [3.0, 20.0])
    np.testing.assert_allclose(trimmed_mean(X, beta=0.0), X.mean(axis=0))
    np.testing.assert_allclose(trimmed_mean(X, beta=0.4), [3.0, 20.0])


def test_krum_picks_the_update_closest_to_its_neighbours():
    updates = np.array([[0.0], [1.0], [2.0], [3.0], [50.0]], dtype=np.float32)
    # f=1: each update is scored over its N-f-2 = 2 nearest; 1.0 and 2.0 score 1+1=2, the first wins.
    np.testing.assert_allclose(krum(updates, f=1), [1.0])
    np.testing.assert_allclose(multi_krum(updates, f=1, m=3), [1.0])  # mean of 1, 2 and then 0 (score 1+4=5)
    with pytest.raises(ValueError, match="2f\\+3 = 7"):
        krum(updates, f=2)
    with pytest.raises(ValueError, match="1 <= m <= N"):
        multi_krum(updates, f=1, m=9)


def test_centered_clipping_by_hand():
    updates = np.array([[0.0], [0.0], [10.0]], dtype=np.float32)
    # center 0, tau 1: the outlier moves the center by 1/3 per iteration.
    np.testing.assert_allclose(centered_clipping(updates, tau=1.0, iterations=1, center=np.zeros(1)), [1 / 3],
                               rtol=1e-6)
    np.testing.assert_allclose(centered_clipping(updates, tau=100.0, iterations=1, center=np.zeros(1)), [10 / 3],
                               rtol=1e-6)


@pytest.mark.parametrize(("call", "words"), [
    (lambda: mean(np.zeros((0, 3))), "N >= 1"),
    (lambda: mean(np.zeros((2, 3)), np.array([1.0])), "Expected 2 weights"),
    (lambda: mean(np.zeros((2, 3)), np.array([0.0, 0.0])), "not all zero"),
    (lambda: trimmed_mean(X, beta=0.5), "beta < 0.5"),
    (lambda: centered_clipping(X, tau=0), "tau > 0"),
    (lambda: aggregate("best", X), "Unknown aggregator 'best'"),
])
def test_preconditions_say_why(call, words):
    with pytest.raises(ValueError, match=words.replace("(", "\\(").replace("+", "\\+")):
        call()


def test_every_task_aggregator_but_secure_has_a_rule():
    from tasks.choices import Aggregator

    assert set(AGGREGATORS) == set(Aggregator.values) - {"secure"}


def test_robust_rules_resist_twenty_percent_of_scaled_noise_attackers():
    rng = np.random.default_rng(0)
    p, honest_n, bad_n = 5_000, 16, 4
    truth = rng.normal(size=p).astype(np.float32)
    honest = truth + 0.1 * rng.normal(size=(honest_n, p)).astype(np.float32)
    attackers = 50.0 * rng.normal(size=(bad_n, p)).astype(np.float32)
    updates = np.vstack([honest, attackers])
    honest_mean = honest.mean(axis=0)

    def error(vector: np.ndarray) -> float:
        return float(np.linalg.norm(vector - honest_mean) / np.linalg.norm(honest_mean))

    assert error(plain_mean(updates)) > 1.0  # the plain mean is dragged far away
    robust = {
        "median": median(updates),
        "trimmed_mean": trimmed_mean(updates, beta=0.2),
        "krum": krum(updates, f=bad_n),
        "multi_krum": multi_krum(updates, f=bad_n, m=honest_n - bad_n),
        "centered_clipping": centered_clipping(updates, tau=1.0, iterations=3),
    }
    for name, vector in robust.items():
        assert error(vector) < 0.1, name


def test_server_optimizers_by_hand():
    w, agg = np.array([1.0, 1.0], dtype=np.float32), np.array([2.0, 0.0], dtype=np.float32)
    new, m = fedavgm(w, agg, None, lr=1.0, beta=0.9)
    np.testing.assert_allclose(new, [2.0, 0.0])  # first step with lr 1 is plain FedAvg
    new2, m2 = fedavgm(new, new + np.array([1.0, 1.0], dtype=np.float32), m, lr=1.0, beta=0.5)
    np.testing.assert_allclose(m2, [1.5, 0.5])
    np.testing.assert_allclose(new2, [3.5, 0.5])
    new, state = fedadam(w, agg, None, lr=0.1, tau=1e-3)
    # m = 0.1 * delta, v = 0.99 tau^2 + 0.01 delta^2 -> step ~ lr * 0.1 * delta / (0.1 |delta|) = lr * sign(delta)
    np.testing.assert_allclose(new, [1.0 + 0.1, 1.0 - 0.1], atol=2e-3)
    assert state.step == 1
