"""disco_client/peer_crypto.py: the shared vectors, per-direction keys, and refusals of what is not authentic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disco_client.peer_crypto import (
    PeerCryptoError,
    RoundKeys,
    associated_data,
    decode_public_key,
    derive_key,
    encode_public_key,
    generate_private_key,
    nonce,
    open_sealed,
    private_key_from_int,
    seal,
    shared_secret,
)
from tests.vectors.make_peer_crypto_vectors import build

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "peer_crypto.json").read_text())
PRIVATE = {p["id"]: private_key_from_int(int(p["private_hex"], 16)) for p in VECTORS["peers"]}
PUBLIC = {p["id"]: p["public_key"] for p in VECTORS["peers"]}


def test_the_vector_file_is_what_the_code_writes():
    assert build() == VECTORS  # regenerate with tests/vectors/make_peer_crypto_vectors.py after a deliberate change


@pytest.mark.parametrize("pair", VECTORS["pairs"], ids=lambda p: f"{p['from'][:8]}->{p['to'][:8]}")
def test_both_ends_agree_on_the_secret_and_each_direction_has_its_own_key(pair):
    a, b = pair["from"], pair["to"]
    assert encode_public_key(PRIVATE[a]) == PUBLIC[a]
    secret = shared_secret(PRIVATE[a], decode_public_key(PUBLIC[b]))
    assert secret == shared_secret(PRIVATE[b], decode_public_key(PUBLIC[a])) == bytes.fromhex(pair["secret_hex"])
    key = derive_key(secret, VECTORS["task"], VECTORS["round"], a, b)
    assert key.hex() == pair["key_hex"]
    assert key != derive_key(secret, VECTORS["task"], VECTORS["round"], b, a)
    assert key != derive_key(secret, VECTORS["task"], VECTORS["round"] + 1, a, b)
    assert key != derive_key(secret, "other-task", VECTORS["round"], a, b)


@pytest.mark.parametrize("case", VECTORS["sealed"], ids=lambda c: f"{c['from'][:4]}->{c['to'][:4]}-{c['kind']}")
def test_sealed_payloads_match_the_vectors_and_open(case):
    keys = RoundKeys(VECTORS["task"], VECTORS["round"], case["from"], PRIVATE[case["from"]], PUBLIC)
    keys._counters[case["to"]] = case["counter"] - 1
    sealed = keys.seal(case["to"], case["kind"], bytes.fromhex(case["plaintext_hex"]))
    assert sealed.hex() == case["sealed_hex"]
    assert sealed[1:13] == nonce(case["counter"])
    receiver = RoundKeys(VECTORS["task"], VECTORS["round"], case["to"], PRIVATE[case["to"]], PUBLIC)
    assert receiver.open(case["from"], case["kind"], sealed).hex() == case["plaintext_hex"]


def test_a_payload_opens_only_for_its_receiver_kind_and_round():
    (a, b, c), task, rnd = list(PUBLIC), VECTORS["task"], VECTORS["round"]
    sealed = RoundKeys(task, rnd, a, PRIVATE[a], PUBLIC).seal(b, "share", b"secret share")
    refusals = [
        lambda: RoundKeys(task, rnd, b, PRIVATE[b], PUBLIC).open(a, "partial", sealed),  # replayed as another kind
        lambda: RoundKeys(task, rnd + 1, b, PRIVATE[b], PUBLIC).open(a, "share", sealed),  # in another round
        lambda: RoundKeys(task, rnd, c, PRIVATE[c], PUBLIC).open(a, "share", sealed),  # by another peer
        lambda: RoundKeys(task, rnd, b, PRIVATE[b], PUBLIC).open(c, "share", sealed),  # claimed by another sender
    ]
    for refuse in refusals:
        with pytest.raises(PeerCryptoError, match="failed authentication"):
            refuse()


def test_a_peer_without_a_public_key_is_refused_by_name():
    a, b = list(PUBLIC)[:2]
    with pytest.raises(PeerCryptoError, match=f"Peer {b} announced no public key"):
        RoundKeys("t", 1, a, PRIVATE[a], {a: PUBLIC[a]}).seal(b, "share", b"x")


@pytest.mark.parametrize("case", VECTORS["refused"], ids=lambda c: c["name"])
def test_malformed_or_altered_payloads_are_refused_with_a_reason(case):
    pair = VECTORS["pairs"][0]
    aad = associated_data(VECTORS["task"], VECTORS["round"], "share", pair["from"], pair["to"])
    with pytest.raises(PeerCryptoError, match=case["error"]):
        open_sealed(bytes.fromhex(pair["key_hex"]), aad, bytes.fromhex(case["sealed_hex"]))


@pytest.mark.parametrize("text, words", [
    (42, "base64 of a 65-byte"), ("not base64!", "not base64"), ("BAAA", "got 3 bytes"),
    ("BA" + "A" * 85 + "=", "not a point"),
])
def test_bad_public_keys_are_refused(text, words):
    with pytest.raises(PeerCryptoError, match=words):
        decode_public_key(text)


def test_fresh_keys_differ_and_nonces_count_up():
    assert encode_public_key(generate_private_key()) != encode_public_key(generate_private_key())
    assert nonce(1) == bytes(11) + b"\x01" and nonce(2**40).hex() == "000000000000010000000000"
    with pytest.raises(PeerCryptoError):
        nonce(0)
    key = bytes(32)
    assert seal(key, 1, b"a", b"x") != seal(key, 2, b"a", b"x")
