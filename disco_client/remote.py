"""What both Python clients (federated and decentralized) share: the task's HTTP API (the task, a
version's weights in the weight manifest's order), local training through a ``Trainer``
(``disco_client.trainer``) and one WebSocket with a queue of the server's messages. No TensorFlow here:
``disco_client.keras`` loads the task's TF.js model into ``tf_keras`` on top of these classes.

Binary frames from the server are queued as ``{"type": "binary", "data": bytes}``; text
frames as their JSON. ``next_event`` raises the server's ``error`` messages.

``token`` is the participant's credential for tasks that are not open to anyone: a DRF API
token (``signed_in`` tasks) or the invitation's secret (``invited`` tasks). It goes in the
``X-Disco-Token`` header of every HTTP request and of the WebSocket handshake, never in a
URL; the resume token goes in the first WebSocket message (``join``).

Participants recover by themselves (the twin of ``static/disco/recovery.js``): ``reconnect`` reopens
a closed connection with exponential backoff and jitter (``Recovery``) and the resume token, and
``next_event`` never waits longer than it is told (the limits in ``wait_limits`` derive from the
task's round deadline); what the server last said of the open round is kept in ``seen``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import websockets

from .codec import ENCODINGS
from .privacy import privatize_weights
from .trainer import Trainer, flatten, unflatten

WS_MAX_SIZE = 256 * 1024 * 1024


class ParticipantError(RuntimeError):
    """The server refused something; the message is the server's reason and ``code`` its code.

    ``code`` is also ``closed`` (the connection closed), ``timeout`` (a wait reached its limit) or
    ``reconnect_failed`` (every reconnection attempt failed).
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


# Codes after which reconnecting or waiting again helps; any other refusal is final.
RECOVERABLE = frozenset({"closed", "timeout"})


@dataclass(frozen=True)
class Recovery:
    """How a participant reconnects and how long it waits (``static/disco/recovery.js`` RECOVERY_DEFAULTS)."""

    attempts: int = 8  # reconnection attempts before giving up
    initial_delay: float = 0.5  # seconds before the first attempt
    max_delay: float = 15.0  # no delay is longer
    factor: float = 2.0  # each delay is this many times the one before
    jitter: float = 0.5  # each delay is shortened by a random fraction up to this
    deadline_seconds: float = 120.0  # the round deadline when neither the task nor the server says
    probes: int = 3  # status probes while a round stays open before the client syncs and trains on

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before attempt ``attempt`` (1-based): exponential, bounded, less up to ``jitter`` of it."""
        full = min(self.max_delay, self.initial_delay * self.factor ** max(0, attempt - 1))
        return full * (1 - self.jitter * rand())


def add_recovery_arguments(parser: Any) -> None:
    """The reconnection settings as command-line options (``manage.py participate`` and ``simulate``)."""
    defaults = Recovery()
    parser.add_argument("--reconnect-attempts", type=int, default=defaults.attempts,
                        help=f"Reconnection attempts after the connection is lost (default {defaults.attempts}).")
    parser.add_argument("--reconnect-max-delay", type=float, default=defaults.max_delay,
                        help=f"Longest wait between two attempts, in seconds (default {defaults.max_delay:g}); "
                             f"they start at {defaults.initial_delay:g} s and double, less up to "
                             f"{round(defaults.jitter * 100)}%% jitter.")


def recovery_from_options(options: dict[str, Any]) -> Recovery:
    defaults = Recovery()
    return Recovery(attempts=max(1, int(options.get("reconnect_attempts") or defaults.attempts)),
                    max_delay=float(options.get("reconnect_max_delay") or defaults.max_delay))


def wait_limits(deadline_seconds: float, round_deadline: str | None = None, now: float | None = None,
                **overrides: float) -> dict[str, float]:
    """Seconds to wait for each thing, from the round deadline (as ``waitLimits`` in recovery.js).

    A socket to open and welcome us, and a status reply: a quarter of a deadline (at least 5 s); an
    update to be accepted: one deadline; a round to end: what remains of the open round's deadline
    (``round_deadline``, an ISO time) plus one deadline for the aggregation.
    """
    from datetime import datetime

    remaining = deadline_seconds
    if round_deadline:
        try:
            at = datetime.fromisoformat(round_deadline).timestamp()
        except ValueError:
            pass
        else:
            remaining = max(0.0, at - (now if now is not None else datetime.now().timestamp()))
    limits = {"open": max(5.0, deadline_seconds / 4), "accepted": float(deadline_seconds),
              "round": remaining + deadline_seconds, "status": max(5.0, deadline_seconds / 4)}
    limits.update(overrides)
    return limits


@dataclass
class TaskServerClient:
    """A participant's connection to one task of a Disco server; subclasses set ``scheme`` and train."""

    scheme: ClassVar[str] = "federated"

    server: str
    task_id: str
    resume_token: str = ""
    token: str = ""
    log: Callable[[str], None] = print
    participant_id: str = ""
    task: dict[str, Any] = field(default_factory=dict)
    weight_order: list[str] = field(default_factory=list)
    topology: dict[str, Any] = field(default_factory=dict)
    recovery: Recovery = field(default_factory=Recovery)
    compression: str = "float32"  # how the server wants federated updates encoded (its welcome says)
    # Updates of at least this many bytes are announced and sent when the server says so (its welcome's
    # ``announceFrom``, aggregation.upload_slots); None: the server does not grant uploads.
    announce_from: int | None = None
    deadline_seconds: float | None = None  # the task's round deadline; else the task's, the welcome's, the default
    waits: dict[str, float] = field(default_factory=dict)  # fixed limits in seconds: open, accepted, round, status
    seen: dict[str, Any] = field(default_factory=dict)  # round, version, deadline: what the server said last
    last_end: dict[str, Any] | None = None  # the last round_closed / round_failed seen
    # Participant sampling: {"round", "invited"} as the server said last (round_closed / round_failed speak of
    # the next round), and the task's participantsPerRound (None: everyone, every round).
    invitation: dict[str, Any] | None = None
    participants_per_round: int | None = None
    _ws: Any = None
    _events: asyncio.Queue | None = None

    # --- HTTP ---------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"X-Disco-Token": self.token} if self.token else {}

    def _get(self, path: str) -> bytes:
        """GET ``path``; a server that cannot be reached (restarting) is tried again with ``recovery``'s backoff."""
        request = urllib.request.Request(self.server.rstrip("/") + path, headers=self._headers())
        for attempt in range(1, self.recovery.attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 403:  # the task's participation rule: the server says what to do
                    raise ParticipantError(_detail(exc)) from None
                if exc.code not in (502, 503, 504) or attempt == self.recovery.attempts:
                    raise
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if attempt == self.recovery.attempts:
                    raise ParticipantError(f"{request.full_url} could not be reached: {exc}", code="closed") from exc
            time.sleep(self.recovery.delay(attempt))
        raise AssertionError("unreachable")

    def fetch_task(self) -> dict[str, Any]:
        self.task = json.loads(self._get(f"/api/tasks/{self.task_id}/"))
        if self.deadline_seconds is None:
            self.deadline_seconds = (self.task.get("trainingInformation") or {}).get("roundDeadlineSeconds")
        return self.task

    def fetch_weights(self, number: int) -> list[np.ndarray]:
        """Version ``number``'s weights as float32 arrays in its weight manifest's order (``weight_order``).

        Only the manifest and the shards are read, never the topology: nothing here deserializes a model.
        """
        base = f"/tasks/{self.task_id}/versions/{number}/"
        manifest = json.loads(self._get(base + "model.json"))["weightsManifest"]
        names, weights = [], []
        for group in manifest:
            data = b"".join(self._get(base + p) for p in group["paths"])
            offset = 0
            for w in group["weights"]:
                size = int(np.prod(w["shape"])) if w["shape"] else 1
                if offset + 4 * size > len(data):
                    raise ParticipantError(f"Version {number} of task {self.task_id!r}: the shards hold fewer bytes "
                                           f"than the manifest's weight {w['name']!r} needs.")
                weights.append(np.frombuffer(data, dtype="<f4", count=size, offset=offset)
                               .reshape(w["shape"]).astype(np.float32))
                names.append(w["name"])
                offset += 4 * size
        self.weight_order = names
        return weights

    def tensors(self, weights: list[np.ndarray]) -> list[tuple[str, np.ndarray]]:
        """(name, array) pairs in the manifest's order, as the codec takes them."""
        if len(weights) != len(self.weight_order):
            raise ParticipantError(f"The trainer has {len(weights)} weight tensors; the task's model has "
                                   f"{len(self.weight_order)}.")
        return list(zip(self.weight_order, weights, strict=True))

    # --- Local training (both schemes) ------------------------------------------------------
    async def join(self, trainer: Trainer) -> tuple[dict[str, Any], dict[str, Any]]:
        """Fetch the task, connect, and give ``trainer`` the current version's weights.

        Returns the task's trainingInformation and the server's welcome.
        """
        info = self.fetch_task()["trainingInformation"]
        welcome = await self.connect()
        weights = await asyncio.to_thread(self.fetch_weights, welcome["currentVersion"])
        trainer.set_weights(weights)
        return info, welcome

    async def train_round(self, trainer: Trainer, info: dict[str, Any], epochs: int | None = None) -> float:
        """Train for a round (``roundDuration`` epochs) and return the last training loss.

        With the task's differential privacy the round's change is then clipped to L2 norm C and
        given N(0, (zC)^2) noise (``disco_client.privacy``), as the browser does before sharing.
        """
        start = trainer.get_weights()
        loss = await asyncio.to_thread(trainer.train, epochs or info["roundDuration"])
        privacy = info.get("privacy")
        if privacy:
            trained = trainer.get_weights()
            private = privatize_weights(flatten(trained), flatten(start), privacy["clippingRadius"],
                                        privacy.get("noiseScale") or 0.0)
            trainer.set_weights(unflatten(private, trained))
        return float(loss)

    # --- Federated evaluation (both schemes) ----------------------------------------------------
    async def score(self, trainer: Trainer) -> tuple[float, float | None, int] | None:
        """(loss, accuracy or None, samples) of the trainer's model on its validation split; None when there is
        nothing to score or the loss is not a number (a diverged model has nothing to report)."""
        scores = await asyncio.to_thread(trainer.validate)
        if scores is None or not scores[2]:
            return None
        loss, accuracy, samples = scores
        loss = float(loss)
        if not np.isfinite(loss):
            self.log(f"The validation loss is {loss}: nothing to report.")
            return None
        return loss, None if accuracy is None else min(1.0, max(0.0, float(accuracy))), int(samples)

    def evaluation_message(self, round_number: int, scores: tuple[float, float | None, int],
                           version: int | None = None) -> dict[str, Any]:
        """The ``evaluation`` message: numbers only, never data (``aggregation.evaluations``)."""
        loss, accuracy, samples = scores
        message = {"type": "evaluation", "round": round_number, "loss": loss, "accuracy": accuracy,
                   "samples": samples}
        if version is not None:
            message["version"] = version
        return message

    def log_evaluation(self, round_number: int, scores: tuple[float, float | None, int], reported: bool,
                       why: str = "") -> None:
        loss, accuracy, samples = scores
        accuracy_text = f", accuracy {accuracy:.4f}" if accuracy is not None else ""
        outcome = "reported" if reported else f"not reported: {why}"
        self.log(f"Round {round_number}: validation loss {loss:.4f}{accuracy_text} on {samples} samples ({outcome}).")

    # --- WebSocket ----------------------------------------------------------------------
    def limits(self) -> dict[str, float]:
        """The time limits (seconds) of this moment's waits."""
        return wait_limits(self.deadline_seconds or self.recovery.deadline_seconds, self.seen.get("deadline"),
                           **self.waits)

    async def connect(self) -> dict[str, Any]:
        """One attempt: open the socket, join (with the resume token) and return the welcome, within ``open``."""
        await self._drop()
        url = self.server.rstrip("/").replace("http", "ws", 1) + f"/ws/{self.scheme}/{self.task_id}/"
        limit = self.limits()["open"]
        try:
            # Channels' origin check refuses clients without an Origin header: present the server's own.
            ws = await asyncio.wait_for(websockets.connect(url, max_size=WS_MAX_SIZE, ping_interval=None,
                                                           origin=self.server.rstrip("/"),
                                                           additional_headers=self._headers()), limit)
        except (TimeoutError, OSError, websockets.WebSocketException) as exc:
            raise ParticipantError(f"Could not connect to {url}: {exc or type(exc).__name__}", code="closed") from exc
        try:
            join = {"type": "join", "client": "python",
                    **({"resumeToken": self.resume_token} if self.resume_token else {})}
            await ws.send(json.dumps(join))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), limit))
        except (TimeoutError, websockets.ConnectionClosed) as exc:
            await ws.close()
            raise ParticipantError(f"No welcome from {url} within {limit:.0f} s.", code="timeout") from exc
        if welcome["type"] == "error":
            await ws.close()
            raise ParticipantError(welcome["reason"], code=welcome.get("code"))
        self.participant_id, self.resume_token = welcome["participantId"], welcome["resumeToken"]
        if welcome.get("compression") in ENCODINGS:
            self.compression = welcome["compression"]
        announce_from = welcome.get("announceFrom")
        self.announce_from = announce_from if isinstance(announce_from, int) and announce_from > 0 else None
        if self.deadline_seconds is None and welcome.get("deadlineSeconds"):
            self.deadline_seconds = float(welcome["deadlineSeconds"])
        self._observe(welcome)
        self._ws, self._events = ws, asyncio.Queue()
        asyncio.get_running_loop().create_task(self._pump(ws, self._events))
        return welcome

    async def reconnect(self) -> dict[str, Any]:
        """Reopen the connection with backoff and jitter and the resume token; return the new welcome.

        At most ``recovery.attempts`` attempts; a refusal other than a closed socket or a time limit
        (the task is full, the participation rule) ends them at once.
        """
        last: Exception | None = None
        attempts = self.recovery.attempts
        for attempt in range(1, attempts + 1):
            delay = self.recovery.delay(attempt)
            self.log(f"Connection lost: reconnecting (attempt {attempt} of {attempts}) in {delay:.1f} s…")
            await asyncio.sleep(delay)
            try:
                welcome = await self.connect()
            except ParticipantError as exc:
                if exc.code not in RECOVERABLE:
                    raise
                last = exc
                continue
            self.log(f"Reconnected: round {welcome['round']}, global version {welcome.get('currentVersion')}.")
            return welcome
        raise ParticipantError(f"Could not reconnect after {attempts} attempts: {last}", code="reconnect_failed")

    async def _pump(self, ws: Any, events: asyncio.Queue) -> None:
        try:
            async for raw in ws:
                await events.put({"type": "binary", "data": raw} if isinstance(raw, bytes) else json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        await events.put({"type": "closed"})

    def _observe(self, event: dict[str, Any]) -> None:
        """Keep what the server says of the open round, whichever message says it."""
        kind = event.get("type")
        if kind in ("welcome", "status", "participants"):
            self.seen = {"round": event.get("round"), "version": event.get("currentVersion", self.seen.get("version")),
                         "deadline": event.get("deadline", self.seen.get("deadline"))}
            if "participantsPerRound" in event:
                self.participants_per_round = event["participantsPerRound"]
            if "invited" in event:
                self.invitation = {"round": event.get("round"), "invited": event["invited"] is not False}
        elif kind in ("round_closed", "round_failed"):
            self.seen = {"round": event.get("nextRound"), "version": event.get("version"), "deadline": None}
            self.last_end = event
            if "invited" in event:
                self.invitation = {"round": event.get("nextRound"), "invited": event["invited"] is not False}

    def invited_to(self, round_number: int) -> bool:
        """Whether this participant may send an update to ``round_number``: yes unless the server said it is not
        invited to it (the task's participantsPerRound)."""
        known = self.invitation
        return not (known is not None and known["round"] == round_number and not known["invited"])

    async def next_event(self, *types: str, timeout: float = 300) -> dict[str, Any]:
        """The next message of one of ``types``, within ``timeout`` seconds in all.

        The server's errors raise ParticipantError with their code; a closed connection raises it with
        code ``closed`` (and forgets the socket, so ``reconnect`` follows), the time limit with ``timeout``.
        """
        if self._events is None:
            raise ParticipantError("Not connected.", code="closed")
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                event = await asyncio.wait_for(self._events.get(), max(0.0, end - loop.time()))
            except TimeoutError:
                raise ParticipantError(f"No {' or '.join(types)} within {timeout:.0f} s.", code="timeout") from None
            self._observe(event)
            if event["type"] == "error":
                raise ParticipantError(f"{event['code']}: {event['reason']}", code=event.get("code"))
            if event["type"] == "closed":
                self._ws = None
                raise ParticipantError("The server closed the connection.", code="closed")
            if event["type"] in types:
                return event

    async def probe(self) -> dict[str, Any] | None:
        """Ask the server's status within ``status``; None after dropping a socket that did not answer."""
        if self._ws is None:
            return None
        try:
            await self._ws.send(json.dumps({"type": "status"}))
            return await self.next_event("status", timeout=self.limits()["status"])
        except websockets.ConnectionClosed:
            pass
        except ParticipantError as exc:
            if exc.code not in RECOVERABLE:
                raise
        await self._drop()
        return None

    async def _drop(self) -> None:
        """Forget the current socket, closing it."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def close(self) -> None:
        await self._drop()


def split_indices(count: int, validation_split: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) sample indices, each in the data's order (``splitIndices`` in trainer.js).

    The validation set is ``round(count * validation_split)`` samples drawn at random (seeded, so a
    rerun holds out the same ones), at least 1 when the split is positive and there are at least 2
    samples, never all of them.
    """
    held = round(count * max(0.0, validation_split))
    if validation_split > 0 and count >= 2:
        held = min(max(held, 1), count - 1)
    if held <= 0:
        return np.arange(count), np.arange(0)
    chosen = np.zeros(count, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(count)[:held]] = True
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


def _rows(x: Any, indices: np.ndarray) -> Any:
    """The samples ``indices`` of model inputs: one array, or a list, tuple or dict of arrays (several inputs)."""
    if isinstance(x, dict):
        return {key: np.asarray(value)[indices] for key, value in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(np.asarray(value)[indices] for value in x)
    return np.asarray(x)[indices]


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read())["detail"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {error.code} from {error.url}"
