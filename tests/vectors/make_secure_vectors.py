"""Writes tests/vectors/secure.json: what disco_client/secure.py computes, which secure.js must reproduce.

Run ``python tests/vectors/make_secure_vectors.py`` after a deliberate change; the tests fail
if the file and this script disagree. Random shares come from a seeded generator here so
the file is stable; the real code draws them from the operating system's CSPRNG.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from disco_client.secure import (  # noqa: E402
    add_shares,
    decode_fixed,
    decode_mean,
    encode_fixed,
    encode_u32_frame,
    fixed_point_scale,
    make_shares,
)

OUT = Path(__file__).with_name("secure.json")

SCALES = [(100.0, 3), (100.0, 5), (100.0, 10), (1.0, 1), (0.001, 2), (5.0, 7), ((2**31 - 1) / 3 / 1024, 3),
          ((2**31 - 1) / 3, 3)]
BAD_SCALES = [(0.0, 3, "positive number"), (-1.0, 3, "positive number"), (1.0, 0, "whole number of peers"),
              (1e9, 3, "overflows 32-bit integers")]

# (R, peers, values): ties at x*S = k + 0.5 round to even; values beyond R are clipped.
ENCODINGS = [
    (1.0, 3, [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -7.0, 1e-9, -1e-9, 0.1, -0.1, 0.333333343267]),
    (100.0, 3, [100.0, -100.0, 99.99, 1e-5, -3.2e-5, 12.345678]),
]


def _f32(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float32).ravel()]


def _u32(values: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(values, dtype=np.uint32).ravel()]


def _encodings() -> list[dict]:
    out = []
    for limit, peers, values in ENCODINGS:
        scale = fixed_point_scale(limit, peers)
        # Add the half-step ties of this scale so rounding half to even is pinned down.
        ties = [k / (2 * scale) for k in (1, 3, 5, -1, -3, -5)]
        x = np.asarray(values + ties, dtype=np.float32)
        out.append({"max_share_value": limit, "peers": peers, "scale": scale, "x": _f32(x),
                    "q": _u32(encode_fixed(x, limit, scale))})
    return out


def _round(name: str, peers: int, size: int, limit: float, seed: int) -> dict:
    """A whole secure round: updates, encodings, every share, the partial sums, the total and the mean."""
    rng = np.random.default_rng(seed)
    updates = rng.normal(0, limit / 2, size=(peers, size)).astype(np.float32)
    updates[0, 0] = 2 * limit  # clipped
    scale = fixed_point_scale(limit, peers)
    encoded = [encode_fixed(u, limit, scale) for u in updates]
    shares = [make_shares(q, peers, rng=rng) for q in encoded]  # shares[i][j]: from peer i to peer j
    partials = [add_shares([shares[i][j] for i in range(peers)]) for j in range(peers)]
    total = add_shares(partials)
    return {"name": name, "peers": peers, "max_share_value": limit, "scale": scale,
            "updates": [_f32(u) for u in updates], "encoded": [_u32(q) for q in encoded],
            "shares": [[_u32(s) for s in row] for row in shares], "partials": [_u32(p) for p in partials],
            "total": _u32(total), "sum": _f32(decode_fixed(total, scale)),
            "mean": _f32(decode_mean(total, scale, peers))}


def _frames() -> tuple[list[dict], list[dict]]:
    good = []
    for fields, values in [({"type": "share", "round": 2}, [0, 1, 2**32 - 1, 2**31, 123456789]),
                           ({"type": "partial", "round": 0, "task": "t\u00e2che"}, []),
                           ({"type": "share", "round": 17}, [7])]:
        frame = encode_u32_frame(fields, np.asarray(values, dtype=np.uint32))
        good.append({"fields": fields, "vector": values, "frame_hex": frame.hex()})
    valid = bytes.fromhex(good[0]["frame_hex"])
    float_frame = valid.replace(b'"encoding":"uint32"', b'"encoding":"float32"')
    bad = [
        {"name": "truncated", "frame_hex": valid[:-1].hex(), "error": "payload has"},
        {"name": "float32-frame", "frame_hex": float_frame.hex(), "error": "Expected a uint32 frame"},
        {"name": "too-short", "frame_hex": "01", "error": "4-byte header length"},
        {"name": "two-dimensional", "frame_hex": valid.replace(b'"shape":[5]', b'"shape":[5,1]').hex(),
         "error": "one-dimensional shape"},
        {"name": "header-not-json", "frame_hex": (struct.pack("<I", 4) + b"{no}").hex(), "error": "not UTF-8 JSON"},
    ]
    return good, bad


def build() -> dict:
    good, bad = _frames()
    return {
        "about": "Written by tests/vectors/make_secure_vectors.py from disco_client/secure.py.",
        "scales": [{"max_share_value": r, "peers": n, "scale": fixed_point_scale(r, n)} for r, n in SCALES],
        "bad_scales": [{"max_share_value": r, "peers": n, "error": e} for r, n, e in BAD_SCALES],
        "encodings": _encodings(),
        "rounds": [_round("three-peers", 3, 9, 1.0, 1), _round("five-peers", 5, 6, 100.0, 2),
                   _round("ten-peers", 10, 4, 0.5, 3)],
        "frames": good,
        "bad_frames": bad,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
