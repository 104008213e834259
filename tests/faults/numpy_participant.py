"""A federated participant in numpy, for the fault-injection suite: the wire protocol without TensorFlow.

It speaks what the browser and ``disco_client.participant`` speak (``join`` with a resume token, updates
encoded by ``disco_client.codec`` and sent by ``disco_client.parts.send_update``, ``round_closed``,
``status``) and trains the task's small dense network with the client's numpy trainer
(``disco_client.trainer.train_dense``: a few full-batch gradient steps). It keeps its own loop rather than
``disco_client.FederatedClient``'s because the faults need what a library client should not offer: a list
of servers to fail over between, a gate to hold it mid-round, and ``vanish``. What it does
when the platform fails under it is what a participant must do:

- a connection that drops or cannot be opened: reconnect with backoff, to the next server of its list,
  resuming as the same participant;
- ``stale_round`` or ``round_failed``, or no news for a while: ask for the round's status, fetch the
  current version if it changed, and continue from there; ``duplicate``: its update is already in.

It stops once the task's current version reaches ``target_version``, holding that version's weights.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets

from disco_client.codec import encode_weights
from disco_client.parts import send_update
from disco_client.remote import ParticipantError, Recovery, TaskServerClient
from disco_client.trainer import train_dense


def generated_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of five features and a label that depends on two of them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] - x[:, 3] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y


Gate = Callable[["NumpyParticipant", int], Awaitable[None]]


@dataclass
class NumpyParticipant:
    name: str
    servers: list[str]
    task_id: str
    x: np.ndarray
    y: np.ndarray
    target_version: int
    before_submit: Gate | None = None  # awaited before each update: where a test holds a participant mid-round
    quiet_seconds: float = 1.0  # no message for this long: ask for the round's status
    resume_token: str = ""
    version: int = 0
    round: int = 0
    contributed_round: int = 0
    accepted_round: int = 0
    names: list[str] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)
    reconnects: int = 0
    refusals: list[str] = field(default_factory=list)
    vanished: bool = False
    _server: int = 0
    _ws: Any = None

    @property
    def server(self) -> str:
        return self.servers[self._server % len(self.servers)]

    @property
    def vector(self) -> np.ndarray:
        return np.concatenate([w.ravel() for w in self.weights])

    # --- HTTP -----------------------------------------------------------------------------------------
    def _fetch_version(self, number: int) -> None:
        """Version ``number``'s weights, read from its manifest and shards as the client reads them."""
        # One attempt: a server that cannot be reached is this participant's cue to fail over to the other one.
        reader = TaskServerClient(self.server, self.task_id, log=lambda _: None, recovery=Recovery(attempts=1))
        weights = reader.fetch_weights(number)
        self.names, self.weights, self.version = reader.weight_order, weights, number

    # --- The protocol -----------------------------------------------------------------------------------
    async def run(self, *, deadline: float) -> None:
        """Take part until the target version (or until ``deadline``, a ``time.monotonic()``), reconnecting."""
        backoff = 0.1
        while self.version < self.target_version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} reached version {self.version}, not {self.target_version}")
            try:
                await self._session(deadline)
                return
            except (TimeoutError, OSError, websockets.WebSocketException, ParticipantError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} reached version {self.version}, not {self.target_version}"
                                       ) from None
                self.reconnects += 1
                self._server += 1  # the next server of the list
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
            finally:
                await self.abort()

    async def _session(self, deadline: float) -> None:
        url = self.server.replace("http", "ws", 1) + f"/ws/federated/{self.task_id}/"
        self._ws = await websockets.connect(url, origin=self.server, ping_interval=None, open_timeout=5,
                                            close_timeout=1, max_size=None)
        join = {"type": "join", "client": "python", **({"resumeToken": self.resume_token} if self.resume_token else {})}
        await self._ws.send(json.dumps(join))
        welcome = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
        if welcome["type"] == "error":
            raise RuntimeError(f"{self.name} was refused: {welcome}")
        self.resume_token = welcome["resumeToken"]
        self.contributed_round = self.accepted_round  # an update cut off with the connection is sent again
        await self._sync(welcome["round"], welcome["currentVersion"])
        while self.version < self.target_version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} is still at version {self.version}")
            if self.contributed_round != self.round:
                await self._submit()
            await self._handle(await self._next_message())

    async def _sync(self, round_number: int, version: int) -> None:
        if version != self.version:
            await asyncio.to_thread(self._fetch_version, version)
        if round_number != self.round:
            self.round = round_number

    async def _submit(self) -> None:
        round_number = self.round
        if self.before_submit is not None:
            await self.before_submit(self, round_number)
        trained = train_dense(self.weights, self.x, self.y)
        frame = encode_weights({"type": "update", "task": self.task_id, "round": round_number,
                                "baseVersion": self.version, "samples": len(self.y)},
                               list(zip(self.names, trained, strict=True)))
        await send_update(self._ws, frame)
        self.contributed_round = round_number  # answered by `accepted`, or an error handled in _handle

    async def _next_message(self) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self._ws.recv(), self.quiet_seconds)
        except TimeoutError:
            await self._ws.send(json.dumps({"type": "status"}))
            raw = await asyncio.wait_for(self._ws.recv(), 10)
        return json.loads(raw)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "accepted":
            self.accepted_round = message["round"]
        elif kind == "round_closed":
            await self._sync(message["nextRound"], message["version"])
        elif kind == "status":
            await self._sync(message["round"], message["currentVersion"])
        elif kind == "round_failed":
            await self._ws.send(json.dumps({"type": "status"}))
        elif kind == "error":
            self.refusals.append(message.get("code", "?"))
            if message.get("code") not in ("duplicate", "stale_round"):
                raise RuntimeError(f"{self.name}: {message}")
            if message.get("code") == "duplicate":
                self.accepted_round = self.contributed_round
            # duplicate: the update is in. stale_round: this round is closing; the status tells what is next.
            await self._ws.send(json.dumps({"type": "status"}))

    async def vanish(self) -> None:
        """Stop reading and writing without closing the socket: a machine that dropped off the network."""
        self.vanished = True
        if self._ws is not None:
            self._ws.transport.pause_reading()
        await asyncio.Event().wait()  # until cancelled

    async def abort(self) -> None:
        if self._ws is not None:
            self._ws.transport.abort()
            self._ws = None
