"""Byzantine attacks for ``manage.py simulate``: what a lying participant sends instead of its update.

Every attack is a pure function with one signature::

    attack(update, base, honest, *, strength, rng) -> weights to send

``update`` is the attacker's own honestly trained weights, ``base`` the round's base model (both flat
float32 vectors in the manifest's order), ``honest`` an N x P matrix of the honest participants'
weights of the same round (the omniscient attacker of the papers; may be empty for the attacks that
do not read it), ``strength`` the attack's one knob (``None``: its default, ``DEFAULT_STRENGTH``).
The result is a full weight vector: attackers send it through the same protocol as anyone, so the
server's checks and bounds apply to it as to an honest update. No Django, no TensorFlow.

- ``noise``: base + Gaussian noise, ``strength`` (default 100) times the RMS of the attacker's own update.
- ``sign_flip``: base - strength * (update - base).
- ``scale``: base + strength * (update - base) (a boosted update, "model replacement").
- ``alie``: "A little is enough" (Baruch, Baruch & Goldberg, NeurIPS 2019): per coordinate, the
  honest updates' mean minus z times their standard deviation; ``strength`` is z, by default the
  paper's z_max for n participants of which f attack (``alie_z``).
- ``ipm``: inner-product manipulation (Xie, Koyejo & Gupta, UAI 2020): -epsilon times the honest
  updates' mean; ``strength`` is epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np

Attack = Callable[..., np.ndarray]

DEFAULT_STRENGTH: dict[str, float | None] = {
    "noise": 100.0,
    "sign_flip": 4.0,
    "scale": 10.0,
    "alie": None,  # z_max of the paper, from the round's numbers (alie_z)
    "ipm": 10.0,
}


def _vectors(update: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    update = np.asarray(update, dtype=np.float32).ravel()
    base = np.asarray(base, dtype=np.float32).ravel()
    if update.shape != base.shape:
        raise ValueError(f"The update has {update.size} values but the base model {base.size}.")
    return update, base


def _honest_deltas(honest: np.ndarray, base: np.ndarray, attack: str) -> np.ndarray:
    matrix = np.asarray(honest, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"The {attack} attack needs at least one honest update of the round.")
    if matrix.shape[1] != base.size:
        raise ValueError(f"The honest updates have {matrix.shape[1]} values but the base model {base.size}.")
    return matrix - base


def noise(update: np.ndarray, base: np.ndarray, honest: np.ndarray | None = None, *, strength: float | None = None,
          rng: np.random.Generator) -> np.ndarray:
    """base + N(0, (strength * rms(update - base))^2) on every coordinate."""
    update, base = _vectors(update, base)
    strength = DEFAULT_STRENGTH["noise"] if strength is None else strength
    rms = float(np.sqrt(np.mean(np.square(update - base)))) if update.size else 0.0
    return (base + rng.normal(0.0, strength * rms, size=base.shape)).astype(np.float32)


def sign_flip(update: np.ndarray, base: np.ndarray, honest: np.ndarray | None = None, *,
              strength: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """base - strength * (update - base): the update reversed and stretched."""
    update, base = _vectors(update, base)
    strength = DEFAULT_STRENGTH["sign_flip"] if strength is None else strength
    return (base - strength * (update - base)).astype(np.float32)


def scale(update: np.ndarray, base: np.ndarray, honest: np.ndarray | None = None, *, strength: float | None = None,
          rng: np.random.Generator | None = None) -> np.ndarray:
    """base + strength * (update - base): the honest direction, boosted."""
    update, base = _vectors(update, base)
    strength = DEFAULT_STRENGTH["scale"] if strength is None else strength
    return (base + strength * (update - base)).astype(np.float32)


def alie_z(participants: int, attackers: int) -> float:
    """Baruch et al.'s z_max: s = floor(n/2 + 1) - f honest updates must seem closer than the attack,
    z = Phi^-1((n - s) / n); at least a small positive z when that is not positive."""
    n, f = participants, attackers
    s = math.floor(n / 2 + 1) - f
    quantile = (n - s) / n
    return max(NormalDist().inv_cdf(min(max(quantile, 1e-6), 1 - 1e-6)), 0.1)


def alie(update: np.ndarray, base: np.ndarray, honest: np.ndarray, *, strength: float | None = None,
         rng: np.random.Generator | None = None, attackers: int = 1) -> np.ndarray:
    """base + mean - z * std of the honest deltas, per coordinate (z = strength, else ``alie_z``)."""
    update, base = _vectors(update, base)
    deltas = _honest_deltas(honest, base, "alie")
    z = alie_z(deltas.shape[0] + attackers, attackers) if strength is None else strength
    return (base + deltas.mean(axis=0) - z * deltas.std(axis=0)).astype(np.float32)


def ipm(update: np.ndarray, base: np.ndarray, honest: np.ndarray, *, strength: float | None = None,
        rng: np.random.Generator | None = None) -> np.ndarray:
    """base - epsilon * mean of the honest deltas (epsilon = strength)."""
    update, base = _vectors(update, base)
    deltas = _honest_deltas(honest, base, "ipm")
    epsilon = DEFAULT_STRENGTH["ipm"] if strength is None else strength
    return (base - epsilon * deltas.mean(axis=0)).astype(np.float32)


ATTACKS: dict[str, Attack] = {"noise": noise, "sign_flip": sign_flip, "scale": scale, "alie": alie, "ipm": ipm}

# Attacks computed from the honest participants' updates of the same round.
NEEDS_HONEST = frozenset({"alie", "ipm"})


def attack(name: str, update: np.ndarray, base: np.ndarray, honest: np.ndarray | None, *,
           strength: float | None = None, rng: np.random.Generator, attackers: int = 1) -> np.ndarray:
    """Apply the attack called ``name``."""
    try:
        rule = ATTACKS[name]
    except KeyError:
        raise ValueError(f"Unknown attack {name!r}; known: {', '.join(ATTACKS)}.") from None
    extra = {"attackers": attackers} if name == "alie" else {}
    return rule(update, base, honest, strength=strength, rng=rng, **extra)


__all__ = ["ATTACKS", "DEFAULT_STRENGTH", "NEEDS_HONEST", "alie", "alie_z", "attack", "ipm", "noise", "scale",
           "sign_flip"]
