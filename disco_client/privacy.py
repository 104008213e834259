"""Client-side differential privacy for a round's update (twin of ``static/disco/privacy.js``).

A participant clips the change its round made (``delta = weights - round_start_weights``)
to L2 norm ``C`` and adds Gaussian noise of standard deviation ``z * C`` to every
coordinate, then shares ``round_start_weights + privatized delta``. (DISCO squares the
standard deviation by mistake.) ``aggregation/accountant.py`` turns ``z`` and the number of
rounds into the (epsilon, delta) spent.
"""

from __future__ import annotations

import math

import numpy as np

# Scaling to exactly C could land a hair above it once rounded to float32: aim just under.
_UNDER = 1.0 - 2.0**-23


def _check(clipping_radius: float, noise_scale: float | None = None) -> None:
    if not (isinstance(clipping_radius, (int, float)) and math.isfinite(clipping_radius) and clipping_radius > 0):
        raise ValueError(f"The clipping radius is a positive number (got {clipping_radius!r}).")
    if noise_scale is not None and not (
            isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"The noise scale is zero or a positive number (got {noise_scale!r}).")


def clip_l2(delta: np.ndarray, clipping_radius: float) -> np.ndarray:
    """``delta`` scaled down (never up) so its L2 norm is at most ``clipping_radius``; float32."""
    _check(clipping_radius)
    values = np.asarray(delta, dtype=np.float32)
    wide = values.astype(np.float64)
    if not np.isfinite(wide).all():
        raise ValueError("The update holds NaN or infinite values: check the learning rate and the data.")
    norm = float(np.sqrt(np.dot(wide.ravel(), wide.ravel())))
    if norm <= clipping_radius:
        return values.copy()
    return (wide * (clipping_radius / norm * _UNDER)).astype(np.float32)


def privatize(delta: np.ndarray, clipping_radius: float, noise_scale: float,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Clip ``delta`` to L2 norm ``C``, then add N(0, (z*C)**2) noise to each coordinate; float32."""
    _check(clipping_radius, noise_scale)
    clipped = clip_l2(delta, clipping_radius)
    if noise_scale == 0:
        return clipped
    rng = rng if rng is not None else np.random.default_rng()
    noise = rng.normal(0.0, noise_scale * clipping_radius, size=clipped.shape)
    return (clipped.astype(np.float64) + noise).astype(np.float32)


def privatize_weights(weights: np.ndarray, round_start_weights: np.ndarray, clipping_radius: float,
                      noise_scale: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The update to share: ``round_start_weights + privatize(weights - round_start_weights)``, float32."""
    start = np.asarray(round_start_weights, dtype=np.float32)
    current = np.asarray(weights, dtype=np.float32)
    if start.shape != current.shape:
        raise ValueError(f"The weights have shape {current.shape} but the round started from {start.shape}.")
    delta = current.astype(np.float64) - start
    private = privatize(delta.astype(np.float32), clipping_radius, noise_scale, rng)
    return (start.astype(np.float64) + private).astype(np.float32)
