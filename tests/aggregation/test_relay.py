"""disco_client/relay.py: relay frames and their parts on the shared vectors; reassembly and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disco_client.relay import RelayError, RelayReassembler, decode_relay_frame, encode_relay_frame, split_relay
from tests.vectors.make_relay_vectors import build

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "relay.json").read_text())


def test_the_vector_file_is_what_the_code_writes():
    assert build() == VECTORS  # regenerate with tests/vectors/make_relay_vectors.py after a deliberate change


@pytest.mark.parametrize("case", VECTORS["splits"], ids=lambda c: f"{c['envelope']['kind']}-{len(c['frames_hex'])}")
def test_payloads_split_into_parts_and_join_again(case):
    payload = bytes.fromhex(case["payload_hex"])
    frames = split_relay(case["envelope"], payload, case["part_bytes"])
    assert [f.hex() for f in frames] == case["frames_hex"]
    joiner = RelayReassembler(max_bytes=1000, part_bytes=case["part_bytes"])
    results = []
    for frame in frames:
        envelope, body = decode_relay_frame(frame)
        assert len(body) <= case["part_bytes"]
        results.append(joiner.push({**envelope, "from": "a"}, body))
    assert results[:-1] == [None] * (len(frames) - 1)
    assert results[-1] == (("a", case["envelope"]["round"], case["envelope"]["kind"]), payload)


@pytest.mark.parametrize("case", VECTORS["bad_frames"], ids=lambda c: c["name"])
def test_malformed_frames_are_refused_with_a_reason(case):
    with pytest.raises(RelayError, match=case["error"]) as caught:
        decode_relay_frame(bytes.fromhex(case["frame_hex"]))
    assert caught.value.code == "bad_relay"


def test_parts_out_of_order_or_over_the_limit_are_refused():
    frames = [decode_relay_frame(f) for f in split_relay({"from": "a", "round": 1, "kind": "share"}, bytes(30), 10)]
    joiner = RelayReassembler(max_bytes=100, part_bytes=10)
    with pytest.raises(RelayError, match="came out of order"):
        joiner.push(*frames[1])
    joiner.push(*frames[0])
    with pytest.raises(RelayError, match="came out of order"):
        joiner.push(*frames[2])
    small = RelayReassembler(max_bytes=25, part_bytes=10)
    small.push(*frames[0])
    small.push(*frames[1])
    with pytest.raises(RelayError, match="over this peer's limit") as caught:
        small.push(*frames[2])
    assert caught.value.code == "too_large"
    with pytest.raises(RelayError, match="over this peer's limit"):
        RelayReassembler(max_bytes=10, part_bytes=10).push({"from": "a", "round": 1, "kind": "x", "part": 0,
                                                            "parts": 50}, b"")
    assert decode_relay_frame(encode_relay_frame({"from": "a", "round": 1, "kind": "x"}, b"z"))[0]["kind"] == "x"
