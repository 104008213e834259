"""Writes tests/vectors/peer_crypto.json: what disco_client/peer_crypto.py computes, for peer_crypto.js to reproduce.

Run ``python tests/vectors/make_peer_crypto_vectors.py`` after a deliberate change; the tests fail
if the file and this script disagree. The private keys are fixed scalars here so the file is
stable; the real code makes a fresh key pair every round.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from disco_client.peer_crypto import (  # noqa: E402
    associated_data,
    derive_key,
    encode_public_key,
    key_info,
    private_key_from_int,
    seal,
    shared_secret,
)

OUT = Path(__file__).with_name("peer_crypto.json")
TASK, ROUND = "mnist", 7
# Three peers with fixed private scalars (ids as the server writes them: UUIDs).
PEERS = [("0b7c2a8e-0000-4000-8000-000000000001", 0x1F2E3D4C5B6A79881726354453627180A9B8C7D6E5F40312233445566778899A),
         ("5d1e6f70-0000-4000-8000-000000000002", 0x0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF),
         ("c3a4b5d6-0000-4000-8000-000000000003", 3)]
PLAINTEXTS = [("share", bytes(range(40))), ("partial", b""), ("update", "t\u00e2che \u00e9t\u00e9".encode() * 3)]


def build() -> dict:
    keys = {pid: private_key_from_int(d) for pid, d in PEERS}
    peers = [{"id": pid, "private_hex": f"{d:064x}", "public_key": encode_public_key(keys[pid])} for pid, d in PEERS]
    pairs, sealed = [], []
    for a, _ in PEERS:
        for b, _ in PEERS:
            if a == b:
                continue
            secret = shared_secret(keys[a], keys[b].public_key())
            key = derive_key(secret, TASK, ROUND, a, b)
            pairs.append({"from": a, "to": b, "secret_hex": secret.hex(), "info": key_info(TASK, ROUND, a, b).decode(),
                          "key_hex": key.hex()})
            for counter, (kind, plaintext) in enumerate(PLAINTEXTS, start=1):
                aad = associated_data(TASK, ROUND, kind, a, b)
                box = seal(key, counter, aad, plaintext)
                sealed.append({"from": a, "to": b, "kind": kind, "counter": counter, "aad": aad.decode(),
                               "plaintext_hex": plaintext.hex(), "sealed_hex": box.hex()})
    good = bytes.fromhex(sealed[0]["sealed_hex"])
    flipped = bytearray(good)
    flipped[20] ^= 0x01
    refused = [
        {"name": "bit-flipped", "sealed_hex": bytes(flipped).hex(), "error": "failed authentication"},
        {"name": "truncated", "sealed_hex": good[:20].hex(), "error": "at least 29 bytes"},
        {"name": "other-version", "sealed_hex": (b"\x02" + good[1:]).hex(), "error": "version 2"},
    ]
    return {"about": "Written by tests/vectors/make_peer_crypto_vectors.py from disco_client/peer_crypto.py.",
            "task": TASK, "round": ROUND, "peers": peers, "pairs": pairs, "sealed": sealed, "refused": refused}


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
