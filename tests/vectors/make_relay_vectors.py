"""Writes tests/vectors/relay.json: what disco_client/relay.py frames, which relay.js must reproduce.

Run ``python tests/vectors/make_relay_vectors.py`` after a deliberate change; the tests fail if
the file and this script disagree. Parts are tiny here (``part_bytes``) so the file stays small;
the protocol's parts are ``RELAY_PART_BYTES`` (1 MiB).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from disco_client.relay import encode_relay_frame, split_relay  # noqa: E402

OUT = Path(__file__).with_name("relay.json")
PEER = "5d1e6f70-0000-4000-8000-000000000002"
SPLITS = [({"to": PEER, "round": 3, "kind": "share"}, bytes(range(23)), 10),
          ({"to": PEER, "round": 1, "kind": "update"}, b"", 10),
          ({"to": PEER, "round": 12, "kind": "partial"}, bytes(range(20)), 10),
          ({"from": PEER, "round": 2, "kind": "t\u00e2che"}, b"\xff\x00", 1024)]
BAD = [("too-short", b"\x01\x02", "4-byte header length"),
       ("length-past-end", struct.pack("<I", 99) + b"{}", "claims 99 bytes"),
       ("no-kind", encode_relay_frame({"to": PEER, "round": 1}, b"x"), '"kind"'),
       ("not-json", struct.pack("<I", 4) + b"{no}", '"kind"'),
       ("part-past-parts", encode_relay_frame({"to": PEER, "round": 1, "kind": "share", "part": 2, "parts": 2}, b""),
        "0 <= part < parts"),
       ("part-not-whole", encode_relay_frame({"to": PEER, "round": 1, "kind": "share", "part": 0.5, "parts": 2}, b""),
        "0 <= part < parts")]


def build() -> dict:
    splits = [{"envelope": env, "payload_hex": payload.hex(), "part_bytes": size,
               "frames_hex": [f.hex() for f in split_relay(env, payload, size)]} for env, payload, size in SPLITS]
    return {"about": "Written by tests/vectors/make_relay_vectors.py from disco_client/relay.py.", "splits": splits,
            "bad_frames": [{"name": n, "frame_hex": f.hex(), "error": e} for n, f, e in BAD]}


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
