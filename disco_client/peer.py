"""A Python peer for decentralized tasks: it trains locally and aggregates with the other peers
through the server's opaque relay (the browser uses WebRTC data channels for the same bytes).

Each round: train ``roundDuration`` epochs, say ``ready``, receive the round's peer list,
then either

- **mean**: send a codec float32 frame ``{"type": "peer_update", "round", "samples"}`` to every
  other peer, tell the server whose updates it holds (``received``) and average exactly the
  ones the server announces every remaining peer holds (``agreed``): the sample-weighted mean
  in float64, in sorted peer-id order, then rounded to float32, so every peer gets identical
  weights even when a peer leaves halfway through sending; or
- **secure** (three peers or more): fixed-point encode the weights, split them into additive
  shares modulo 2**32 (``disco_client.secure``), send share j to peer j, broadcast the sum of
  the shares held ("partial"), and decode the sum of all partials: the plain mean up to the
  quantization bound, while no peer (nor the server) sees another's update.

A peer missing the round's deadline is left out of the mean; in secure aggregation its
shares cannot be recovered, so the round's result is the local weights, with the reason in
``PeerRoundResult.fell_back``. Nothing waits forever.

Local training goes through a ``Trainer`` (``disco_client.trainer``; ``disco_client.keras`` for the
task's TF.js model in ``tf_keras``). Every payload is sealed end to end (``disco_client.peer_crypto``,
the one module of the client that needs the ``cryptography`` package): the peer makes a fresh ECDH
P-256 key pair each round, sends the public key with ``ready``, gets the round's keys with
the ``peers`` list, and seals what it sends each peer with AES-GCM under their pairwise key.
The relay carries only ciphertext, in parts of at most 1 MiB (``disco_client.relay``). A
payload that fails authentication is refused like a missing one::

    client = DecentralizedClient("http://127.0.0.1:8000", "mnist")
    results = asyncio.run(client.run(trainer, rounds=3))
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

import numpy as np
import websockets

from . import secure
from .codec import CodecError, TensorSpec, decode_weights, encode_weights
from .peer_crypto import PeerCryptoError, RoundKeys, encode_public_key, generate_private_key
from .relay import RELAY_SLACK, RelayError, RelayReassembler, decode_relay_frame, split_relay
from .remote import ParticipantError, TaskServerClient
from .trainer import Trainer, unflatten


@dataclass
class PeerRoundResult:
    """One decentralized round from a peer's side."""

    round: int
    peers: list[str]
    used: str
    fell_back: str | None
    train_loss: float
    global_loss: float
    global_accuracy: float | None
    samples: int
    contributors: list[str] = field(default_factory=list)  # whose updates the round's mean holds
    # The round's result scored on this peer's validation split (None: no split).
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_samples: int | None = None
    reported: bool = False  # the server recorded the evaluation


@dataclass
class ExchangeResult:
    vector: np.ndarray
    peers: list[str]
    contributors: list[str]
    fell_back: str | None
    next_round: int
    round: int | None = None  # the round it took part in (another than asked after a reconnect or a sync)


# How long after the exchange deadline a peer waits for the server's agreement (it agrees at the deadline).
AGREEMENT_SLACK = 5.0


@dataclass
class DecentralizedClient(TaskServerClient):
    """Joins ``/ws/decentralized/<task>/`` and exchanges updates through the relay."""

    scheme: ClassVar[str] = "decentralized"

    peers_timeout: float = 600.0
    welcome: dict[str, Any] = field(default_factory=dict)
    last_update: np.ndarray | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # payloads refused (not authentic, malformed), with why
    _inbox: dict[tuple[int, str, str], bytes] = field(default_factory=dict)
    _peers: dict[int, dict[str, Any]] = field(default_factory=dict)
    _closed: dict[int, dict[str, Any]] = field(default_factory=dict)
    _agreed: dict[int, list[str]] = field(default_factory=dict)
    _left: set[tuple[int, str]] = field(default_factory=set)
    _keys: dict[int, RoundKeys] = field(default_factory=dict)
    _private: dict[int, Any] = field(default_factory=dict)
    _parts: RelayReassembler = field(default_factory=lambda: RelayReassembler(max_bytes=256 * 1024 * 1024))
    _status: dict[str, Any] | None = None
    _evaluated: dict[int, dict[str, Any]] = field(default_factory=dict)

    async def connect(self) -> dict[str, Any]:
        self.welcome = await super().connect()
        return self.welcome

    # --- messages ------------------------------------------------------------------------
    async def send_json(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message))

    async def send_relay(self, to: str, round_number: int, kind: str, payload: bytes) -> bool:
        """Seal ``payload`` for ``to`` and send it through the relay in parts; False when it cannot be sealed."""
        try:
            sealed = self._keys[round_number].seal(to, kind, payload)
        except (KeyError, PeerCryptoError) as exc:
            self.log(f"sent nothing to peer {to[:8]}: {exc}")
            return False
        for frame in split_relay({"to": to, "round": round_number, "kind": kind}, sealed):
            await self._ws.send(frame)
        return True

    async def announce_ready(self, round_number: int) -> None:
        """Say ``ready`` with a fresh ECDH public key for the round (its private half never leaves this peer)."""
        private = self._private[round_number] = generate_private_key()
        await self.send_json({"type": "ready", "round": round_number, "publicKey": encode_public_key(private)})

    def _open(self, round_number: int, kind: str, peer: str) -> bytes | None:
        """The plaintext of ``peer``'s ``kind`` payload, or None (with the reason logged) when it is not authentic."""
        try:
            return self._keys[round_number].open(peer, kind, self._inbox[(round_number, kind, peer)])
        except PeerCryptoError as exc:
            self.refused.append(f"{kind} from {peer[:8]}: {exc}")
            self.log(f"refused peer {peer[:8]}'s {kind}: {exc}")
            return None

    def _take(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "binary":
            try:
                whole = self._parts.push(*decode_relay_frame(event["data"]))
            except RelayError as exc:
                self.log(f"refused a relayed frame: {exc}")
                return
            if whole is not None:
                self._inbox[whole[0][1], whole[0][2], whole[0][0]] = whole[1]
        elif kind == "peers":
            self._peers[event["round"]] = event
            private = self._private.pop(event["round"], None)
            if private is not None:
                self._keys[event["round"]] = RoundKeys(self.task_id, event["round"], self.participant_id, private,
                                                       dict(event.get("publicKeys") or {}))
        elif kind == "round_closed":
            self._closed[event["round"]] = event
        elif kind == "agreed":
            self._agreed[event["round"]] = list(event["peers"])
        elif kind == "peer_left":
            self._left.add((event["round"], event["peer"]))
        elif kind in ("status", "participants"):
            self._status = event
        elif kind == "evaluation_recorded":
            self._evaluated[event["round"]] = event
        elif kind == "error":
            self.errors.append(event)
            self.log(f"server: {event['code']}: {event['reason']}")
        elif kind == "closed":
            self._ws = None
            raise ParticipantError("The server closed the connection.", code="closed")

    async def _wait_for(self, done: Callable[[], bool], deadline: float) -> bool:
        """Handle the server's messages until ``done()`` holds (True) or ``deadline`` (monotonic) passes (False)."""
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                event = await asyncio.wait_for(self._events.get(), remaining)
            except TimeoutError:
                return False
            self._take(event)
        return True

    def _missing(self, round_number: int, kind: str, others: list[str]) -> list[str]:
        return [p for p in others if (round_number, kind, p) not in self._inbox and (round_number, p) not in self._left]

    async def _collect(self, round_number: int, kind: str, others: list[str], deadline: float) -> list[str]:
        """Wait for ``kind`` from each of ``others``; returns who sent it (peers that left are skipped)."""
        await self._wait_for(lambda: not self._missing(round_number, kind, others), deadline)
        return [p for p in others if (round_number, kind, p) in self._inbox]

    # --- one round's exchange ---------------------------------------------------------------
    async def exchange(self, tensors: list[tuple[str, np.ndarray]], samples: int, round_number: int) -> ExchangeResult:
        """Aggregate this peer's weights with the round's other peers; never waits past the round's deadline."""
        vector = np.concatenate([np.asarray(t, np.float32).ravel() for _, t in tensors])
        self.last_update = vector
        self._parts.max_bytes = 8 * vector.size + RELAY_SLACK
        round_number = await self._announce_recovering(round_number)
        event = self._peers[round_number]
        peers: list[str] = event["peers"]
        left = (datetime.fromisoformat(event["deadline"]) - datetime.now(datetime.fromisoformat(
            event["deadline"]).tzinfo)).total_seconds()
        deadline = time.monotonic() + max(1.0, left)
        others = [p for p in peers if p != self.participant_id]
        specs = [TensorSpec(name, tuple(np.shape(t))) for name, t in tensors]
        wants_secure = bool(self.welcome.get("secure"))
        if wants_secure and len(peers) >= 3:
            result, contributors, fell_back = await self._secure(vector, round_number, peers, deadline)
        else:
            result, contributors, notes = await self._mean(tensors, vector, samples, round_number, others, specs,
                                                           deadline)
            fell_back = "; ".join(filter(None, [
                f"secure aggregation needs at least 3 peers, this round has {len(peers)}: used the mean"
                if wants_secure else None, *notes])) or None
        await self.send_json({"type": "done", "round": round_number})
        await self._wait_for(lambda: round_number in self._closed, deadline + 10)
        closed = self._closed.get(round_number)
        next_round = closed["nextRound"] if closed else round_number + 1
        for key in [k for k in self._inbox if k[0] <= round_number]:
            del self._inbox[key]
        for number in [n for n in self._agreed if n <= round_number]:
            del self._agreed[number]
        for number in [n for n in self._keys if n <= round_number]:
            del self._keys[number]  # the round's keys are forgotten with it
        self._parts.discard_round(round_number)
        return ExchangeResult(result, peers, contributors, fell_back, next_round, round_number)

    def _announced(self, round_number: int, errors_before: int) -> bool:
        """The round's peer list came, or the server refused the announcement (``wrong_round``) since."""
        return round_number in self._peers or any(e.get("code") == "wrong_round" for e in self.errors[errors_before:])

    async def _announce_recovering(self, round_number: int) -> int:
        """Say ``ready`` and wait for the round's peers; returns the round they were announced for.

        A closed connection is reopened (``reconnect``: backoff, resume token) and the peer announces
        itself for the open round the welcome names; no peer list within ``peers_timeout``, or a
        ``wrong_round`` refusal, asks the server's status and announces again for the open round, at
        most ``recovery.probes`` times.
        """
        probes = 0
        while True:
            errors = len(self.errors)
            try:
                if self._ws is None:
                    round_number = (await self.reconnect())["round"]
                await self.announce_ready(round_number)
                if await self._wait_for(partial(self._announced, round_number, errors),
                                        time.monotonic() + self.peers_timeout) and round_number in self._peers:
                    return round_number
                probes += 1
                if probes > self.recovery.probes:
                    reason = f" (last error: {self.errors[-1]['reason']})" if self.errors else ""
                    raise ParticipantError(f"No peer list for round {round_number} within "
                                           f"{self.peers_timeout:.0f} s{reason}.", code="timeout")
                self._status = None
                await self.send_json({"type": "status"})
                if await self._wait_for(lambda: self._status is not None,
                                        time.monotonic() + self.limits()["status"]):
                    round_number = self._status["round"]
                else:  # a socket that does not answer: reconnect
                    await self._drop()
            except websockets.ConnectionClosed:
                self._ws = None
            except ParticipantError as exc:
                if exc.code != "closed":
                    raise

    async def _mean(self, tensors, vector, samples, round_number, others, specs, deadline):
        frame = encode_weights({"type": "peer_update", "round": round_number, "samples": samples}, tensors)
        await asyncio.gather(*(self.send_relay(p, round_number, "update", frame) for p in others))
        received = await self._collect(round_number, "update", others, deadline)
        updates = {self.participant_id: (vector, samples)}
        limit = len(frame) + RELAY_SLACK
        for peer in received:
            plain = self._open(round_number, "update", peer)
            if plain is None:
                continue
            try:
                message = decode_weights(plain, max_bytes=limit, expected=specs)
                count = message.header.get("samples")
                if message.header.get("round") != round_number or not isinstance(count, int) or count < 1:
                    raise CodecError("wrong round or sample count")
            except CodecError as exc:
                self.log(f"ignored peer {peer[:8]}'s update: {exc}")
                continue
            updates[peer] = (message.vector, count)
        notes = []
        missing = [p for p in others if p not in updates]
        if missing:
            notes.append(f"{len(missing)} peer(s) sent nothing before the deadline; mean of the others")
        agreed = await self._agree(round_number, sorted(updates), deadline)
        if agreed is None:
            notes.append("the server announced no agreement in time: mean of the updates this peer holds")
            agreed = sorted(updates)
        left_out = [p for p in updates if p not in agreed]
        if left_out:
            notes.append(f"{len(left_out)} update(s) left out: not every peer received them")
        used = [p for p in agreed if p in updates]
        if not used:
            return vector, [self.participant_id], [*notes, "no update reached every peer: kept the local weights"]
        return weighted_mean({p: updates[p] for p in used}), used, notes

    async def _agree(self, round_number: int, held: list[str], deadline: float) -> list[str] | None:
        """Report the updates held; the server answers with those every remaining peer holds (None: no answer)."""
        await self.send_json({"type": "received", "round": round_number, "peers": held})
        await self._wait_for(lambda: round_number in self._agreed or round_number in self._closed,
                             deadline + AGREEMENT_SLACK)
        return self._agreed.get(round_number)

    async def _secure(self, vector, round_number, peers, deadline):
        me, n = self.participant_id, len(peers)
        keys = self._keys.get(round_number)
        keyless = [p for p in peers if p != me and (keys is None or p not in keys.public_keys)]
        if keyless:
            return vector, [me], (f"secure aggregation: {', '.join(p[:8] for p in keyless)} announced no public key, "
                                  "so shares cannot be sent privately; kept the local weights")
        bound = float(self.welcome.get("maxShareValue") or 100.0)
        scale = secure.fixed_point_scale(bound, n)
        shares = secure.make_shares(secure.encode_fixed(vector, bound, scale), n)
        others = [p for p in peers if p != me]
        await asyncio.gather(*(self.send_relay(p, round_number, "share", secure.encode_u32_frame(
            {"type": "share", "round": round_number}, shares[j])) for j, p in enumerate(peers) if p != me))
        if len(await self._collect(round_number, "share", others, deadline)) < len(others):
            missing = ", ".join(p[:8] for p in self._missing(round_number, "share", others)) or "a peer that left"
            return vector, [me], f"secure aggregation: no share from {missing} in time; kept the local weights"
        held = [shares[peers.index(me)]]
        for p in others:
            share = self._u32(round_number, "share", p, vector.size)
            if share is None:
                return vector, [me], (f"secure aggregation: peer {p[:8]}'s share was refused ({self.refused[-1]}); "
                                      "kept the local weights")
            held.append(share)
        partial = secure.add_shares(held)
        frame = secure.encode_u32_frame({"type": "partial", "round": round_number}, partial)
        await asyncio.gather(*(self.send_relay(p, round_number, "partial", frame) for p in others))
        if len(await self._collect(round_number, "partial", others, deadline)) < len(others):
            return vector, [me], ("secure aggregation: a peer's partial sum did not arrive in time; kept the local "
                                  "weights")
        partials = [partial]
        for p in others:
            value = self._u32(round_number, "partial", p, vector.size)
            if value is None:
                return vector, [me], (f"secure aggregation: peer {p[:8]}'s partial sum was refused "
                                      f"({self.refused[-1]}); kept the local weights")
            partials.append(value)
        return secure.decode_mean(secure.add_shares(partials), scale, n), sorted(peers), None

    def _u32(self, round_number: int, kind: str, peer: str, size: int) -> np.ndarray | None:
        plain = self._open(round_number, kind, peer)
        if plain is None:
            return None
        try:
            _, values = secure.decode_u32_frame(plain, expected_size=size)
        except CodecError as exc:
            self.refused.append(f"{kind} from {peer[:8]}: {exc}")
            return None
        return values

    async def report_evaluation(self, round_number: int,
                                trainer: Trainer) -> tuple[tuple[float, float | None, int] | None, bool]:
        """Score the round's result (the trainer holds it now) on its validation data and report it.

        Returns (scores or None, whether the server recorded them); a refusal is logged, not raised.
        The server's other messages meanwhile (the next round's) are kept as during an exchange.
        """
        scores = await self.score(trainer)
        if scores is None:
            return None, False
        if self._ws is None:
            self.log_evaluation(round_number, scores, False, "not connected")
            return scores, False
        errors = len(self.errors)

        def answered() -> bool:
            return round_number in self._evaluated or any(e.get("about") == "evaluation"
                                                          for e in self.errors[errors:])
        try:
            await self.send_json(self.evaluation_message(round_number, scores))
            await self._wait_for(answered, time.monotonic() + self.limits()["status"])
        except websockets.ConnectionClosed:
            self._ws = None
        except ParticipantError as exc:
            if exc.code != "closed":
                raise
        reported = self._evaluated.pop(round_number, None) is not None
        refusals = [e["reason"] for e in self.errors[errors:] if e.get("about") == "evaluation"]
        self.log_evaluation(round_number, scores, reported, "; ".join(refusals) or "no reply in time")
        return scores, reported

    # --- training loop -----------------------------------------------------------------------
    async def run(self, trainer: Trainer, *, rounds: int, epochs_per_round: int | None = None,
                  on_round: Callable[[PeerRoundResult], None] | None = None) -> list[PeerRoundResult]:
        """Join and train ``rounds`` decentralized rounds with ``trainer``; returns each round's local metrics.

        After each round the peers' aggregate is scored on the trainer's validation data (``validate``) and
        the scores are reported to the server.
        """
        info, welcome = await self.join(trainer)
        return await self.train_rounds(trainer, info, welcome, rounds=rounds, epochs_per_round=epochs_per_round,
                                       on_round=on_round)

    async def train_rounds(self, trainer: Trainer, info: dict[str, Any], welcome: dict[str, Any], *, rounds: int,
                           epochs_per_round: int | None = None,
                           on_round: Callable[[PeerRoundResult], None] | None = None) -> list[PeerRoundResult]:
        """The rounds after ``join``: ``trainer`` holds the welcome's version; the connection is closed at the end."""
        round_number, results = welcome["round"], []
        try:
            for _ in range(rounds):
                train_loss = await self.train_round(trainer, info, epochs_per_round)
                local = trainer.get_weights()
                try:
                    outcome = await self.exchange(self.tensors(local), trainer.samples, round_number)
                except (ParticipantError, websockets.ConnectionClosed) as exc:
                    if getattr(exc, "code", "closed") != "closed":
                        raise
                    # Lost mid-exchange: keep the local weights, reconnect and go on in the open round.
                    self._ws = None
                    round_number = (await self.reconnect())["round"]
                    self.log(f"The connection closed during an exchange: keeping the local weights, continuing "
                             f"in round {round_number}.")
                    continue
                round_number = outcome.round if outcome.round is not None else round_number
                trainer.set_weights(unflatten(outcome.vector, local))
                val, reported = await self.report_evaluation(round_number, trainer)
                loss, accuracy, samples = await asyncio.to_thread(trainer.evaluate)
                result = PeerRoundResult(round_number, outcome.peers, "relay", outcome.fell_back, train_loss,
                                         float(loss), None if accuracy is None else float(accuracy), samples,
                                         outcome.contributors, *(val or (None, None, None)), reported)
                results.append(result)
                if on_round:
                    on_round(result)
                round_number = outcome.next_round
        finally:
            await self.close()
        return results


def weighted_mean(updates: dict[str, tuple[np.ndarray, int]]) -> np.ndarray:
    """The sample-weighted mean in float64, summed in sorted peer-id order, then float32.

    Every peer computes it from the same updates in the same order, so all get the same bits.
    """
    total = sum(samples for _, samples in updates.values())
    acc = np.zeros(next(iter(updates.values()))[0].size, dtype=np.float64)
    for peer in sorted(updates):
        vector, samples = updates[peer]
        acc += vector.astype(np.float64) * samples
    return (acc / total).astype(np.float32)
