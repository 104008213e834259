"""The training interface the protocols drive, and a small numpy trainer that implements it.

A ``Trainer`` holds a model and a participant's data. The federated and decentralized clients
(``disco_client.participant``, ``disco_client.peer``) only ever exchange its weights, as float32
arrays in the order of the task's weight manifest (``TaskServerClient.weight_order``), so any
framework can train: ``disco_client.keras.KerasTrainer`` wraps the task's TF.js model in
``tf_keras``; ``DenseTrainer`` below is plain numpy.

The clients call ``train`` and ``evaluate`` in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

Scores = tuple[float, float | None, int]  # (loss, accuracy or None, samples)


@runtime_checkable
class Trainer(Protocol):
    """What a client needs of local training."""

    @property
    def samples(self) -> int:
        """How many samples it trains on: the weight of its update in a sample-weighted mean."""
        ...

    def get_weights(self) -> list[np.ndarray]:
        """The model's weights, in the task's weight-manifest order."""
        ...

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Overwrite the model's weights (same order and shapes as ``get_weights``)."""
        ...

    def train(self, epochs: int) -> float:
        """Train ``epochs`` epochs on the training data; return the last training loss."""
        ...

    def evaluate(self) -> Scores:
        """Loss, accuracy (None when the task has none) and samples on the training data."""
        ...

    def validate(self) -> Scores | None:
        """The same on the participant's validation data, or None when it has none."""
        ...


def flatten(weights: Sequence[np.ndarray]) -> np.ndarray:
    """All weights as one float32 vector (the order of ``weights``)."""
    if not weights:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([np.asarray(w, dtype=np.float32).ravel() for w in weights])


def unflatten(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``vector`` cut back into float32 arrays of the shapes of ``like``."""
    out, start = [], 0
    for w in like:
        size = int(np.prod(np.shape(w)))
        out.append(np.asarray(vector[start:start + size], dtype=np.float32).reshape(np.shape(w)))
        start += size
    if start != len(vector):
        raise ValueError(f"A vector of {len(vector)} values does not fit weights of {start} values.")
    return out


def dense_forward(weights: Sequence[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """The activations of a [kernel, bias]* network: ReLU hidden layers, a sigmoid output (float64)."""
    activations = [np.asarray(x, dtype=np.float64)]
    for i in range(0, len(weights), 2):
        z = activations[-1] @ weights[i] + weights[i + 1]
        activations.append(np.maximum(z, 0) if i + 2 < len(weights) else 1 / (1 + np.exp(-z)))
    return activations


def train_dense(weights: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray, *, steps: int = 5,
                rate: float = 0.5) -> list[np.ndarray]:
    """Full-batch gradient descent on a [kernel, bias]* ReLU network with a sigmoid output and log loss."""
    w = [np.asarray(a, dtype=np.float64) for a in weights]
    target = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    for _ in range(steps):
        activations = dense_forward(w, x)
        delta = (activations[-1] - target) / len(x)
        grads: list[np.ndarray] = [None] * len(w)  # type: ignore[list-item]
        for i in range(len(w) - 2, -1, -2):
            grads[i], grads[i + 1] = activations[i // 2].T @ delta, delta.sum(axis=0)
            if i:
                delta = (delta @ w[i].T) * (activations[i // 2] > 0)
        w = [a - rate * g for a, g in zip(w, grads, strict=True)]
    return [a.astype(np.float32) for a in w]


def dense_scores(weights: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray) -> Scores:
    """Binary cross-entropy and accuracy of a ``dense_forward`` network on (x, y)."""
    p = np.clip(dense_forward(weights, x)[-1].reshape(-1), 1e-7, 1 - 1e-7)
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    loss = float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))
    return loss, float(np.mean((p > 0.5) == (t > 0.5))), len(t)


@dataclass
class DenseTrainer:
    """A numpy ``Trainer`` for binary classification with a dense network (kernel, bias pairs; ReLU hidden
    layers, one sigmoid output unit) such as a small tabular task's model: full-batch gradient descent on log
    loss, ``steps_per_epoch`` steps of ``rate`` an epoch. Its weights come from the server (``join``)."""

    x: np.ndarray
    y: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None = None
    rate: float = 0.5
    steps_per_epoch: int = 1
    weights: list[np.ndarray] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.y)

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        self.weights = [np.array(w, dtype=np.float32) for w in weights]

    def train(self, epochs: int) -> float:
        self.weights = train_dense(self.weights, self.x, self.y, steps=epochs * self.steps_per_epoch, rate=self.rate)
        return self.evaluate()[0]

    def evaluate(self) -> Scores:
        return dense_scores(self.weights, self.x, self.y)

    def validate(self) -> Scores | None:
        if self.validation is None or not len(self.validation[1]):
            return None
        return dense_scores(self.weights, *self.validation)


__all__ = ["DenseTrainer", "Scores", "Trainer", "dense_scores", "flatten", "train_dense", "unflatten"]
