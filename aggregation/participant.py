"""A Python participant: joins a federated task over the same protocol as the browser.

It fetches the task's current TF.js model over HTTP, loads it into ``tf_keras``, trains
``roundDuration`` epochs on local data, sends its weights (in parts when they are large), waits for
the round to close and continues from the new global model. Tests, simulations and
people who want to join from a script use it::

    client = FederatedClient("http://127.0.0.1:8000", "titanic")
    history = asyncio.run(client.run(x, y, rounds=3))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .codec import encode_weights
from .incoming import PART_BYTES
from .incoming import send_update as send_weight_message
from .remote import ParticipantError, TaskServerClient, _weight_name

__all__ = ["FederatedClient", "ParticipantError", "RoundResult"]


@dataclass
class RoundResult:
    """One round from a participant's side: its local training, then the new global model on its data."""

    round: int
    version: int
    train_loss: float
    global_loss: float
    global_accuracy: float | None
    samples: int


@dataclass
class FederatedClient(TaskServerClient):
    scheme: ClassVar[str] = "federated"

    last_update: np.ndarray | None = None
    part_bytes: int = PART_BYTES

    async def send_update(self, model: Any, *, round_number: int, base_version: int, samples: int,
                          encoding: str = "float32") -> dict[str, Any]:
        by_name = {_weight_name(v): v for v in model.weights}
        tensors = [(name, by_name[name].numpy()) for name in self.weight_order]  # the manifest's order
        self.last_update = np.concatenate([t.ravel() for _, t in tensors]).astype(np.float32)
        fields = {"type": "update", "task": self.task_id, "round": round_number, "baseVersion": base_version,
                  "samples": samples}
        await send_weight_message(self._ws, encode_weights(fields, tensors, encoding), self.part_bytes)
        return await self.next_event("accepted")

    # --- Training loop ------------------------------------------------------------------
    async def run(self, x: Any, y: np.ndarray, *, rounds: int, epochs_per_round: int | None = None,
                  on_round: Callable[[RoundResult], None] | None = None) -> list[RoundResult]:
        """Train ``rounds`` federated rounds on (x, y); returns each round's local metrics."""
        info, welcome, y = await self.join_with_model(y)
        model = self.model
        round_number, version = welcome["round"], welcome["currentVersion"]
        results = []
        try:
            for _ in range(rounds):
                train_loss = await self.train_local_round(x, y, info, epochs_per_round)
                accepted = await self.send_update(model, round_number=round_number, base_version=version,
                                                  samples=len(y))
                closed = await self.next_event("round_closed")
                assert closed["round"] == accepted["round"]
                round_number, version = closed["nextRound"], closed["version"]
                self.set_version_weights(model, version)
                scores = await asyncio.to_thread(model.evaluate, x, y, verbose=0, return_dict=True)
                result = RoundResult(closed["round"], version, train_loss, float(scores["loss"]),
                                     scores.get("accuracy"), len(y))
                results.append(result)
                if on_round:
                    on_round(result)
        finally:
            await self.close()
        return results
