"""The (epsilon, delta) a participant has spent, from Google's ``dp-accounting`` RDP accountant.

Each round a participant shares its update clipped to L2 norm ``C`` with Gaussian noise of
standard deviation ``z * C`` (``aggregation/privacy.py``): a Gaussian mechanism with noise
multiplier ``z``. A participant takes part in every round (no subsampling), so ``rounds``
rounds compose ``GaussianDpEvent(z)`` that many times. The neighbouring relation is the
library's default, add-or-remove-one: the guarantee bounds what the shared updates reveal
about whether a participant's contribution was there at all (participant-level DP).

``dp_accounting`` (and scipy under it) is imported on first use, not when Django starts.
"""

from __future__ import annotations

import math
from functools import lru_cache

DEFAULT_DELTA = 1e-5


def _check(noise_scale: float, rounds: int, delta: float) -> None:
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"The noise scale is zero or a positive number (got {noise_scale!r}).")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"The number of rounds is a whole number >= 0 (got {rounds!r}).")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"delta is a probability strictly between 0 and 1 (got {delta!r}).")


@lru_cache(maxsize=1024)
def privacy_spent(noise_scale: float, rounds: int, delta: float = DEFAULT_DELTA) -> float:
    """epsilon after ``rounds`` Gaussian rounds of noise multiplier ``noise_scale``, at ``delta``.

    0.0 before any round; ``math.inf`` when there is no noise (no guarantee at all).
    """
    _check(noise_scale, rounds, delta)
    if rounds == 0:
        return 0.0
    if noise_scale == 0:
        return math.inf
    import dp_accounting
    from dp_accounting import rdp

    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(noise_scale), rounds)
    return float(accountant.get_epsilon(delta))
