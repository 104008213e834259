"""A Python participant: joins a federated task over the same protocol as the browser.

It takes the task's current weights from the server, trains ``roundDuration`` epochs on local data
through a ``Trainer`` (``disco_client.trainer``: numpy, or ``disco_client.keras`` for the task's
TF.js model in ``tf_keras``), sends its weights (in parts when they are large, ``disco_client.parts``),
waits for the round to end and continues from the version the server names: the new global model, or
after a ``round_failed`` the last good one. It recovers by itself (``disco_client.remote``): a closed
connection is reopened with backoff and the resume token, a ``stale_round`` refusal or a round that
ended meanwhile syncs it to the server's current round and version, and no wait is unbounded.
Tests, simulations and people who want to join from a script use it::

    trainer = DenseTrainer(x, y)          # or disco_client.keras.KerasFederatedClient(...).run(x, y, ...)
    client = FederatedClient("http://127.0.0.1:8000", "titanic")
    history = asyncio.run(client.run(trainer, rounds=3))
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import websockets

from .codec import encode_weights
from .parts import PART_BYTES
from .parts import send_update as send_weight_message
from .remote import ParticipantError, TaskServerClient
from .trainer import Trainer, flatten, unflatten

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
    outcome: str = "round_closed"  # or round_failed, or sync (stale_round, reconnected, timeout)
    contributed: bool = True  # False: not invited to the round (participantsPerRound), so nothing was sent
    # The round's result scored on this participant's validation split (None: no split, or no result to score).
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_samples: int | None = None
    reported: bool = False  # the server recorded the evaluation


@dataclass
class FederatedClient(TaskServerClient):
    scheme: ClassVar[str] = "federated"

    last_update: np.ndarray | None = None
    part_bytes: int = PART_BYTES
    # For simulations (``manage.py simulate --byzantine``): called after local training with (trained weights,
    # the round's base weights, round number) as flat manifest-order vectors; what it returns is sent instead,
    # through the same protocol, so the server checks it as any update. None (the default): send what trained.
    replace_update: Callable[[np.ndarray, np.ndarray, int], Awaitable[np.ndarray]] | None = None

    def _frame(self, tensors: list[tuple[str, np.ndarray]], *, round_number: int, base_version: int, samples: int,
               encoding: str) -> bytes:
        self.last_update = flatten([t for _, t in tensors])
        fields = {"type": "update", "task": self.task_id, "round": round_number, "baseVersion": base_version,
                  "samples": samples}
        return encode_weights(fields, tensors, encoding)

    async def send_update(self, tensors: list[tuple[str, np.ndarray]], *, round_number: int, base_version: int,
                          samples: int, encoding: str | None = None) -> dict[str, Any]:
        """Send one update, (name, weights) pairs in the manifest's order (``tensors``), and return the server's
        ``accepted`` (no recovery: ``contribute`` recovers).

        ``encoding``: the codec's; by default the task's compression, as the server's welcome said."""
        frame = self._frame(tensors, round_number=round_number, base_version=base_version, samples=samples,
                            encoding=encoding or self.compression)
        await self._send_frame(frame)
        return await self.next_event("accepted", timeout=self.limits()["accepted"])

    async def _send_frame(self, frame: bytes) -> None:
        """Send a weight message; a large one waits for the server's ``update_go`` (aggregation.upload_slots)."""
        await send_weight_message(self._ws, frame, self.part_bytes, announce_from=self.announce_from,
                                  granted=self._upload_granted)

    async def _upload_granted(self) -> None:
        await self.next_event("update_go", timeout=self.limits()["accepted"])

    async def contribute(self, tensors: list[tuple[str, np.ndarray]], *, round_number: int, base_version: int,
                         samples: int, encoding: str | None = None) -> dict[str, Any]:
        """Send this round's update and return how the round ended, with the version to continue from.

        ``{"type": "round_closed" | "round_failed" | "sync", "round", "version", "nextRound", "reason"?}``:
        a closed connection is reopened (and the update sent again while its round is open; a
        ``duplicate`` refusal then means it already counts); ``stale_round``, a round that ended while
        reconnecting and a round still open after ``recovery.probes`` status probes give ``sync``.
        Not invited to the round (the task's participantsPerRound): nothing is sent (unless a ``participants``
        message invites it before the round ends); it waits for the round's end, marked ``contributed: False``.
        """
        frame = self._frame(tensors, round_number=round_number, base_version=base_version, samples=samples,
                            encoding=encoding or self.compression)
        accepted, uninvited, probes = False, False, 0
        while True:
            try:
                if self._ws is None:
                    await self.reconnect()
                    if self.seen.get("round") != round_number:
                        return self._ended(round_number, "reconnected", uninvited)
                uninvited = not accepted and not self.invited_to(round_number)
                if not accepted and not uninvited:
                    try:
                        await self._send_frame(frame)
                    except websockets.ConnectionClosed:
                        self._ws = None
                        continue
                    try:
                        await self.next_event("accepted", timeout=self.limits()["accepted"])
                    except ParticipantError as exc:
                        if exc.code != "duplicate":  # sent again after a reconnect: it already counts
                            raise
                    accepted = True
                if not self._has_ended(round_number):
                    # Not invited: a participants message may invite it in place of one who left.
                    ends = ("round_closed", "round_failed") + (("participants",) if uninvited else ())
                    await self.next_event(*ends, timeout=self.limits()["round"])
                if self._has_ended(round_number):
                    return self._ended(round_number, uninvited=uninvited)
            except ParticipantError as exc:
                if exc.code == "not_invited":  # the server knows better: wait for the round's end
                    self.invitation, uninvited = {"round": round_number, "invited": False}, True
                elif exc.code == "stale_round":
                    state = await self.probe()
                    if state is not None or self._has_ended(round_number):
                        return self._ended(round_number, "stale_round", uninvited)
                elif exc.code == "timeout":
                    probes += 1
                    state = await self.probe()
                    if (self._has_ended(round_number) or (state is not None and state["round"] != round_number)
                            or probes >= self.recovery.probes):
                        return self._ended(round_number, "timeout", uninvited)
                elif exc.code != "closed":
                    raise
                # closed, or a probe that found the socket dead: the loop reconnects

    def _has_ended(self, round_number: int) -> bool:
        return self.last_end is not None and self.last_end.get("round") == round_number

    def _ended(self, round_number: int, reason: str | None = None, uninvited: bool = False) -> dict[str, Any]:
        if self._has_ended(round_number):
            outcome = dict(self.last_end)
        else:
            outcome = {"type": "sync", "reason": reason, "round": round_number, "version": self.seen.get("version"),
                       "nextRound": self.seen.get("round")}
            self.log(f"Round {round_number}: synced with the server ({reason}); continuing from global version "
                     f"{outcome['version']}, round {outcome['nextRound']}.")
        if uninvited:
            per = self.participants_per_round
            self.log(f"Not invited to round {round_number}" + (f" ({per} participants per round)" if per else "")
                     + f"; trained locally, continuing from global version {outcome['version']}.")
            outcome["contributed"] = False
        return outcome

    async def report_evaluation(self, outcome: dict[str, Any],
                                trainer: Trainer) -> tuple[tuple[float, float | None, int] | None, bool]:
        """Score the round's result (the trainer holds it now) on its validation data and report it.

        Only a round that produced the version the model holds is scored: a failed round made none, a
        superseded one's result is not what the participant continues from, a sync names no round's
        result. Returns (scores or None, whether the server recorded them); a refusal is logged, not raised.
        """
        version = outcome.get("version")
        if outcome.get("type") != "round_closed" or outcome.get("resultVersion", version) != version:
            return None, False
        scores = await self.score(trainer)
        if scores is None:
            return None, False
        if self._ws is None:
            self.log_evaluation(outcome["round"], scores, False, "not connected")
            return scores, False
        try:
            await self._ws.send(json.dumps(self.evaluation_message(outcome["round"], scores, version)))
            await self.next_event("evaluation_recorded", timeout=self.limits()["status"])
        except websockets.ConnectionClosed:
            self._ws = None
            self.log_evaluation(outcome["round"], scores, False, "the connection closed")
            return scores, False
        except ParticipantError as exc:
            self.log_evaluation(outcome["round"], scores, False, str(exc))
            return scores, False
        self.log_evaluation(outcome["round"], scores, True)
        return scores, True

    # --- Training loop ------------------------------------------------------------------
    async def run(self, trainer: Trainer, *, rounds: int, epochs_per_round: int | None = None,
                  on_round: Callable[[RoundResult], None] | None = None) -> list[RoundResult]:
        """Join and train ``rounds`` federated rounds with ``trainer``; returns each round's local metrics.

        After each round the new global model is scored on the trainer's validation data (``validate``)
        and the scores are reported to the server.
        """
        info, welcome = await self.join(trainer)
        return await self.train_rounds(trainer, info, welcome, rounds=rounds, epochs_per_round=epochs_per_round,
                                       on_round=on_round)

    async def train_rounds(self, trainer: Trainer, info: dict[str, Any], welcome: dict[str, Any], *, rounds: int,
                           epochs_per_round: int | None = None,
                           on_round: Callable[[RoundResult], None] | None = None) -> list[RoundResult]:
        """The rounds after ``join``: ``trainer`` holds the welcome's version; the connection is closed at the end."""
        round_number, version = welcome["round"], welcome["currentVersion"]
        if welcome.get("invited") is False:
            self.log(f"Not invited to round {round_number} ({welcome.get('participantsPerRound')} participants per "
                     "round); training locally until invited.")
        results = []
        try:
            for _ in range(rounds):
                base = flatten(trainer.get_weights()) if self.replace_update else None
                train_loss = await self.train_round(trainer, info, epochs_per_round)
                if self.replace_update:
                    trained = trainer.get_weights()
                    replaced = await self.replace_update(flatten(trained), base, round_number)
                    trainer.set_weights(unflatten(replaced, trained))
                outcome = await self.contribute(self.tensors(trainer.get_weights()), round_number=round_number,
                                                base_version=version, samples=trainer.samples)
                if outcome["type"] == "round_failed":
                    self.log(f"Round {outcome['round']} failed: {outcome.get('reason')}, continuing from version "
                             f"{outcome['version']}.")
                round_number, version = outcome["nextRound"], outcome["version"]
                trainer.set_weights(await asyncio.to_thread(self.fetch_weights, version))
                val, reported = await self.report_evaluation(outcome, trainer)
                loss, accuracy, samples = await asyncio.to_thread(trainer.evaluate)
                val_loss, val_accuracy, val_samples = val or (None, None, None)
                result = RoundResult(outcome["round"], version, train_loss, float(loss),
                                     None if accuracy is None else float(accuracy), samples, outcome["type"],
                                     contributed=outcome.get("contributed", True), val_loss=val_loss,
                                     val_accuracy=val_accuracy, val_samples=val_samples, reported=reported)
                results.append(result)
                if on_round:
                    on_round(result)
        finally:
            await self.close()
        return results
