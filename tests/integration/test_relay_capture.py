"""What a curious server holds after secure rounds over the relay: ciphertext it cannot open or combine.

Three Python peers run secure aggregation through real daphne (Redis channel layer). Every frame
between them and the server passes a recording proxy at the server's door, so the test holds
exactly what the server saw: the public keys (``ready``, ``peers``) and every relayed part. Then

- no key the server could derive from what it saw opens any payload (the peers' real keys do);
- no signed subset sum of the captured payloads, read as the old plaintext share encoding,
  equals or comes near any peer's update (the same search on the plaintexts finds every one);
- the round's result is still the plain mean within the quantization bound;
- one altered byte makes its receiver refuse the payload, and the round keeps the local weights.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict

import numpy as np
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import disco_client.peer
import disco_client.remote
from disco_client import secure
from disco_client.peer_crypto import (
    PeerCryptoError,
    associated_data,
    decode_public_key,
    derive_key,
    generate_private_key,
    open_sealed,
    shared_secret,
)
from disco_client.relay import RelayReassembler, decode_relay_frame
from tests.integration.test_decentralized import platform, run_peers  # noqa: F401  (the module's platform)
from tests.integration.test_federated import run_async, titanic_like

pytestmark = pytest.mark.services
_RAW = (Encoding.X962, PublicFormat.UncompressedPoint)
REAL_CONNECT = websockets.connect
TASK = "peer-secure"
BOUND, PEERS = 10.0, 3  # PeerSecure's max_share_value, and the round's size


class RecordingDoor:
    """A WebSocket proxy in front of daphne that records every frame both ways (and may alter one)."""

    def __init__(self, upstream: str, tamper=None):
        self.upstream = upstream.replace("http", "ws", 1)
        self.tamper = tamper
        self.sent: list[tuple[int, bytes | str]] = []  # (connection number, frame) from peers to the server
        self.received: list[tuple[int, bytes | str]] = []  # from the server to peers
        self.port = 0

    async def _serve(self, client) -> None:
        number = id(client)
        async with REAL_CONNECT(self.upstream + client.request.path, max_size=None, ping_interval=None,
                                origin=self.upstream.replace("ws", "http", 1)) as server:
            async def up():
                async for frame in client:
                    self.sent.append((number, frame))
                    await server.send(self.tamper(frame) if self.tamper and isinstance(frame, bytes) else frame)
                await server.close()

            async def down():
                async for frame in server:
                    self.received.append((number, frame))
                    await client.send(frame)
                await client.close()

            await asyncio.gather(up(), down(), return_exceptions=True)

    async def __aenter__(self):
        self._server = await websockets.serve(self._serve, "127.0.0.1", 0, max_size=None, ping_interval=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        await self._server.wait_closed()

    def payloads(self) -> dict[tuple[int, str, str], list[tuple[str, bytes]]]:
        """Whole relayed payloads as the server saw them: (round, kind, receiver) -> [(sender's connection, bytes)]."""
        joiner = RelayReassembler(max_bytes=1 << 30)
        out = defaultdict(list)
        for number, frame in self.sent:
            if isinstance(frame, bytes):
                envelope, body = decode_relay_frame(frame)
                whole = joiner.push({**envelope, "from": str(number)}, body)
                if whole:
                    out[(envelope["round"], envelope["kind"], envelope["to"])].append((str(number), whole[1]))
        return out

    def public_keys(self) -> dict[int, dict[str, str]]:
        """round -> the public keys the server handed out with the peer list."""
        keys = {}
        for _, frame in self.received:
            if isinstance(frame, str) and (message := json.loads(frame)).get("type") == "peers":
                keys[message["round"]] = message["publicKeys"]
        return keys


async def _secure_rounds_behind(door: RecordingDoor, url: str, rounds: int, private_keys: list):
    """Three Python peers train ``rounds`` secure rounds, their WebSockets through ``door``.

    Their HTTP still goes straight to daphne. Each private key a peer makes is appended to
    ``private_keys``, only so the test can show the captured payloads are the ones the peers opened.
    """
    port = url.rsplit(":", 1)[1]

    def via_door(address, **kwargs):
        return REAL_CONNECT(address.replace(f":{port}/", f":{door.port}/"), **kwargs)

    def remembered_key():
        key = generate_private_key()
        private_keys.append(key)
        return key

    saved = (disco_client.remote.websockets.connect, disco_client.peer.generate_private_key)
    disco_client.remote.websockets.connect = via_door
    disco_client.peer.generate_private_key = remembered_key
    try:
        async with door:
            datasets = [titanic_like(n, seed) for n, seed in ((50, 31), (70, 32), (80, 33))]
            return await run_peers(url, TASK, datasets, rounds=rounds)
    finally:
        disco_client.remote.websockets.connect, disco_client.peer.generate_private_key = saved


def _raw(text: str) -> bytes:
    return decode_public_key(text).public_bytes(*_RAW)


def _who(door: RecordingDoor, clients) -> dict[str, str]:
    """Connection number -> participant id (the server knows both; the test reads them from the welcome)."""
    ids = {}
    for number, frame in door.received:
        if isinstance(frame, str) and (message := json.loads(frame)).get("type") == "welcome":
            ids[str(number)] = message["participantId"]
    assert sorted(ids.values()) == sorted(c.participant_id for c in clients)
    return ids


def _server_guesses(secret_candidates: list[bytes], task: str, rnd: int, sender: str, receiver: str) -> list[bytes]:
    return [derive_key(s, task, rnd, sender, receiver) for s in secret_candidates] + \
        [hashlib.sha256(s).digest() for s in secret_candidates]


def _secrets_from_public(a: str, b: str) -> list[bytes]:
    """Every 'secret' the server can compute from two public keys and a key pair of its own."""
    pa, pb = decode_public_key(a), decode_public_key(b)
    mine = generate_private_key()
    xa = pa.public_numbers().x.to_bytes(32, "big")
    xb = pb.public_numbers().x.to_bytes(32, "big")
    return [shared_secret(mine, pa), shared_secret(mine, pb), xa, xb, bytes(32),
            hashlib.sha256(xa + xb).digest(), hashlib.sha256(xb + xa).digest()]


def _signed_sums(vectors: list[np.ndarray]) -> np.ndarray:
    """Every sum of the vectors with coefficients -1, 0 or 1 (mod 2**32), as int32: meet in the middle."""
    def half(part):
        sums = np.zeros((1, vectors[0].size), dtype=np.uint32)
        for v in part:
            sums = np.concatenate([sums, sums + v, sums - v])
        return sums
    left, right = half(vectors[: len(vectors) // 2]), half(vectors[len(vectors) // 2:])
    return (left[:, None, :] + right[None, :, :]).reshape(-1, vectors[0].size).view(np.int32)[1:]  # not the empty sum


def _closest(candidates: np.ndarray, target: np.ndarray, scale: int) -> float:
    """The smallest largest-coordinate distance between a candidate (decoded as a sum or a mean) and ``target``."""
    as_sum = np.abs(candidates / scale - target).max(axis=1).min()
    as_mean = np.abs(candidates / (scale * PEERS) - target).max(axis=1).min()
    return float(min(as_sum, as_mean))


def test_the_server_holds_only_ciphertext_it_cannot_open_or_combine(platform):  # noqa: F811
    private_keys: list[ec.EllipticCurvePrivateKey] = []
    door = RecordingDoor(platform.url)
    clients, results = run_async(_secure_rounds_behind(door, platform.url, 2, private_keys))
    assert all(r.fell_back is None and len(r.peers) == PEERS for per in results for r in per)
    # The result is still the plain mean within the quantization bound.
    finals = [c.model_vector(c.model) for c in clients]
    assert all(np.array_equal(finals[0], f) for f in finals[1:])
    plain = sum(np.clip(c.last_update.astype(np.float64), -BOUND, BOUND) for c in clients) / PEERS
    scale = secure.fixed_point_scale(BOUND, PEERS)
    assert np.abs(finals[0] - plain).max() <= secure.quantization_bound(scale) + np.abs(plain).max() * 2 ** -23

    who = _who(door, clients)
    by_public = {k.public_key().public_bytes(*_RAW): k for k in private_keys}
    payloads, keys_seen = door.payloads(), door.public_keys()
    rounds = sorted(keys_seen)
    assert len(rounds) == 2 and all(len(keys_seen[r]) == PEERS for r in rounds)
    size = clients[0].last_update.size
    for rnd in rounds:
        ciphertexts, plaintexts = [], []
        for (number, kind, receiver), sent in sorted(payloads.items()):
            if number != rnd:
                continue
            assert kind in ("share", "partial")
            for connection, sealed in sent:
                sender = who[connection]
                assert sealed[0] == 1 and len(sealed) > 4 * size  # version byte, nonce, ciphertext, tag
                aad = associated_data(TASK, rnd, kind, sender, receiver)
                for guess in _server_guesses(_secrets_from_public(keys_seen[rnd][sender], keys_seen[rnd][receiver]),
                                             TASK, rnd, sender, receiver):
                    with pytest.raises(PeerCryptoError, match="failed authentication"):
                        open_sealed(guess, aad, sealed)
                # The receiver's real key opens it: these are the payloads the peers used.
                real = by_public[_raw(keys_seen[rnd][receiver])]
                key = derive_key(shared_secret(real, decode_public_key(keys_seen[rnd][sender])), TASK, rnd, sender,
                                 receiver)
                plaintext = open_sealed(key, aad, sealed)
                plaintexts.append(secure.decode_u32_frame(plaintext, expected_size=size)[1][:16].copy())
                # The old encoding's place for the vector, read from the ciphertext.
                ciphertexts.append(np.frombuffer(sealed[-(16 + 4 * size):-16], dtype="<u4")[:16].copy())
        assert len(ciphertexts) == 2 * PEERS * (PEERS - 1)  # every share and partial sum went through the relay
        targets = [secure.decode_fixed(secure.encode_fixed(c.last_update, BOUND, scale), scale)[:16] for c in clients]
        # Control: in the clear, a signed sum of what the relay carried rebuilds each peer's update exactly ...
        clear = _signed_sums(plaintexts)
        if rnd == rounds[-1]:  # the last round's updates are the clients' last_update
            assert all(_closest(clear, t, scale) <= 1 / scale for t in targets)
        # ... but no signed sum of the ciphertexts comes near any peer's update of any round.
        sealed_sums = _signed_sums(ciphertexts)
        # ("near": closer than half the update's largest coordinate, which a guess of zeros would miss by)
        assert all(_closest(sealed_sums, t, scale) > np.abs(t).max() / 2 for t in targets)
        assert _closest(sealed_sums, plain[:16], scale) > np.abs(plain[:16]).max() / 2  # nor the round's mean
    # The server's own storage holds neither an update nor a key that opens one.
    stored = platform.stored_bytes()
    assert all(c.last_update[:32].tobytes() not in stored for c in clients)


def test_an_altered_payload_is_refused_and_the_round_keeps_the_local_weights(platform):  # noqa: F811
    flipped = []

    def flip_first_share(frame: bytes) -> bytes:
        envelope, body = decode_relay_frame(frame)
        if envelope["kind"] == "share" and not flipped and len(body) > 40:
            flipped.append(envelope["to"])
            altered = bytearray(frame)
            altered[-20] ^= 0x80
            return bytes(altered)
        return frame

    door = RecordingDoor(platform.url, tamper=flip_first_share)
    clients, results = run_async(_secure_rounds_behind(door, platform.url, 1, []))
    assert len(flipped) == 1
    victim = next(c for c in clients if c.participant_id == flipped[0])
    assert any("failed authentication" in r for r in victim.refused), victim.refused
    victim_result = results[clients.index(victim)][0]
    assert "share was refused" in victim_result.fell_back and "failed authentication" in victim_result.fell_back
    for client, per in zip(clients, results, strict=True):
        assert "kept the local weights" in per[0].fell_back
        np.testing.assert_array_equal(client.model_vector(client.model), client.last_update)

