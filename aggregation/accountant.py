"""The (epsilon, delta) a participant has spent, from Google's ``dp-accounting`` RDP accountant.

Each round a participant shares its update clipped to L2 norm ``C`` with Gaussian noise of
standard deviation ``z * C`` (``disco_client/privacy.py``). The guarantee is participant-level,
and its neighbouring relation is **replace one participant's data**: two worlds differ in
everything one participant holds. Outside secure aggregation, whoever aggregates sees each
participant's noised update on its own, and between the two worlds that update's clipped
value can move from any point of the radius-C ball to any other: an L2 sensitivity of
``2C``, twice that of add/remove-one. With noise ``z * C`` this is a Gaussian mechanism of
noise multiplier ``z / 2``, which is what ``privacy_spent`` composes, once per round.

The number of rounds comes from the server's records (``rounds_recorded``), never from the
client: every federated round to which updates were sent, every decentralized round whose
peers started exchanging. A participant who skipped rounds has spent less than reported.
There is no subsampling (every participant takes part in every round it is present for).

``dp_accounting`` (and scipy under it) is imported on first use, not when Django starts.
"""

from __future__ import annotations

import math
from functools import lru_cache

DEFAULT_DELTA = 1e-5
NEIGHBOURING_RELATION = "replace_one"
SENSITIVITY_IN_CLIPPING_RADII = 2  # replace-one: a clipped update can move by up to 2C


def _check(noise_scale: float, rounds: int, delta: float) -> None:
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"The noise scale is zero or a positive number (got {noise_scale!r}).")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"The number of rounds is a whole number >= 0 (got {rounds!r}).")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"delta is a probability strictly between 0 and 1 (got {delta!r}).")


@lru_cache(maxsize=1024)
def privacy_spent(noise_scale: float, rounds: int, delta: float = DEFAULT_DELTA) -> float:
    """epsilon after ``rounds`` rounds with noise scale ``noise_scale`` (std ``z * C``), at ``delta``, replace-one.

    Each round is a Gaussian mechanism of sensitivity ``2C``, i.e. noise multiplier ``z / 2``.
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
    multiplier = noise_scale / SENSITIVITY_IN_CLIPPING_RADII
    accountant.compose(dp_accounting.GaussianDpEvent(multiplier), rounds)
    return float(accountant.get_epsilon(delta))


def rounds_recorded(task) -> int:
    """How many rounds of ``task`` shared participants' updates, from the server's records.

    Federated: ``Round`` rows with at least one stored contribution (whatever became of the
    round). Decentralized: ``PeerRound`` rows that reached the exchange, with selected peers.
    An upper bound on any one participant's rounds.
    """
    from .models import PeerRound, Round

    if task.scheme == "decentralized":
        return PeerRound.objects.filter(task=task, status__in=[PeerRound.Status.EXCHANGING, PeerRound.Status.CLOSED],
                                        turns__selected=True).distinct().count()
    return Round.objects.filter(task=task, contributions__isnull=False).distinct().count()
