"""disco_client/peer.py's relay path without a server: sealed payloads in 1 MiB parts, joined and opened."""

from __future__ import annotations

from disco_client.peer import DecentralizedClient
from disco_client.peer_crypto import RoundKeys, encode_public_key, generate_private_key
from disco_client.relay import RELAY_PART_BYTES, decode_relay_frame, encode_relay_frame, split_relay

A, B = "0b7c2a8e-0000-4000-8000-000000000001", "5d1e6f70-0000-4000-8000-000000000002"


def _as_delivered(frame: bytes, sender: str) -> dict:
    """What the server forwards: the envelope's "to" replaced by "from", the part untouched."""
    envelope, body = decode_relay_frame(frame)
    return {"type": "binary", "data": encode_relay_frame({"from": sender, "round": envelope["round"],
                                                          "kind": envelope["kind"], "part": envelope["part"],
                                                          "parts": envelope["parts"]}, body)}


def _pair() -> tuple[RoundKeys, DecentralizedClient]:
    ka, kb = generate_private_key(), generate_private_key()
    keys = {A: encode_public_key(ka), B: encode_public_key(kb)}
    receiver = DecentralizedClient("http://127.0.0.1:1", "mnist", participant_id=B, log=lambda _: None)
    receiver._keys[4] = RoundKeys("mnist", 4, B, kb, keys)
    return RoundKeys("mnist", 4, A, ka, keys), receiver


def test_a_payload_over_1_mib_crosses_in_parts_and_opens_at_its_receiver():
    sender, receiver = _pair()
    payload = bytes(range(256)) * (3 * RELAY_PART_BYTES // 256 + 7)
    frames = split_relay({"to": B, "round": 4, "kind": "share"}, sender.seal(B, "share", payload))
    assert len(frames) == 4 and all(len(f) <= RELAY_PART_BYTES + 200 for f in frames)
    for frame in frames:
        receiver._take(_as_delivered(frame, A))
    assert receiver._open(4, "share", A) == payload
    assert receiver.refused == []


def test_a_payload_altered_in_transit_is_refused_with_the_reason():
    sender, receiver = _pair()
    frame = bytearray(split_relay({"to": B, "round": 4, "kind": "partial"}, sender.seal(B, "partial", b"x" * 64))[0])
    frame[-30] ^= 1
    receiver._take(_as_delivered(bytes(frame), A))
    assert receiver._open(4, "partial", A) is None
    assert "failed authentication" in receiver.refused[-1]
