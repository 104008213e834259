"""aggregation/accountant.py: epsilon matches a reference computed independently of the accountant object.

The accountant's neighbouring relation is replace-one participant: a clipped update's sensitivity is
2C, so noise z*C is a Gaussian mechanism of multiplier z/2 (see the module's docstring).

Reference: the closed form of the Gaussian mechanism's RDP curve, eps(alpha) = rounds * alpha * S**2 / (2 z**2)
with sensitivity S = 2 clipping radii,
on dp_accounting's default orders, converted to (epsilon, delta) with the library's own conversion
``rdp_privacy_accountant.compute_epsilon``. Two bounds that do not use that conversion bracket it: the
classic conversion min_alpha eps(alpha) + log(1/delta) / (alpha - 1) (never tighter) and the PLD
accountant (tighter than RDP for Gaussians, and close).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import GaussianDpEvent
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS, compute_epsilon

from aggregation.accountant import DEFAULT_DELTA, NEIGHBOURING_RELATION, SENSITIVITY_IN_CLIPPING_RADII, privacy_spent

S = SENSITIVITY_IN_CLIPPING_RADII

CONFIGS = [(1.1, 1, 1e-5), (1.1, 100, 1e-5), (1.0, 10, 1e-5), (5.0, 1000, 1e-6), (0.5, 3, 1e-3)]


@pytest.mark.parametrize(("z", "rounds", "delta"), CONFIGS)
def test_epsilon_matches_the_closed_form_gaussian_rdp_curve(z, rounds, delta):
    orders = np.asarray(DEFAULT_RDP_ORDERS, dtype=np.float64)
    reference, _ = compute_epsilon(orders, rounds * orders * S * S / (2 * z * z), delta)
    assert privacy_spent(z, rounds, delta) == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize(("z", "rounds", "delta"), CONFIGS)
def test_epsilon_lies_between_the_pld_and_the_classic_conversion(z, rounds, delta):
    eps = privacy_spent(z, rounds, delta)
    classic = min(rounds * a * S * S / (2 * z * z) + math.log(1 / delta) / (a - 1) for a in DEFAULT_RDP_ORDERS)
    pld = PLDAccountant()
    pld.compose(GaussianDpEvent(z / S), rounds)
    assert pld.get_epsilon(delta) * 0.999 <= eps <= classic


def test_a_known_value():
    # z = 1.1, 100 rounds, delta = 1e-5: dp-accounting 0.6's RDP accountant gives 250.91... for multiplier
    # 0.55 (replace-one); it gave 83.0997... for multiplier 1.1 (add/remove-one), what this module reported before.
    assert privacy_spent(1.1, 100) == pytest.approx(250.9116, abs=1e-3)
    assert DEFAULT_DELTA == 1e-5 and NEIGHBOURING_RELATION == "replace_one" and S == 2


def test_more_rounds_or_less_noise_spend_more():
    assert privacy_spent(1.0, 0) == 0.0
    assert privacy_spent(1.0, 1) < privacy_spent(1.0, 2) < privacy_spent(1.0, 50)
    assert privacy_spent(2.0, 10) < privacy_spent(1.0, 10)
    assert privacy_spent(0.0, 5) == math.inf  # no noise: no guarantee


@pytest.mark.parametrize(("z", "rounds", "delta", "message"), [
    (-1.0, 3, 1e-5, "noise scale"), (float("nan"), 3, 1e-5, "noise scale"), (1.0, -1, 1e-5, "whole number"),
    (1.0, 2.5, 1e-5, "whole number"), (1.0, True, 1e-5, "whole number"), (1.0, 3, 0.0, "delta"),
    (1.0, 3, 1.0, "delta")])
def test_bad_arguments_are_refused(z, rounds, delta, message):
    with pytest.raises(ValueError, match=message):
        privacy_spent(z, rounds, delta)
