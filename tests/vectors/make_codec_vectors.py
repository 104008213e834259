"""Writes tests/vectors/codec.json: frames made by disco_client/codec.py that both codecs must reproduce.

Run ``python tests/vectors/make_codec_vectors.py`` after a deliberate format change; the
tests fail if the file and this script disagree.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from disco_client.codec import decode_weights, encode_weights  # noqa: E402

OUT = Path(__file__).with_name("codec.json")

CASES = [
    ("float32-two-tensors", {"type": "update", "task": "titanic", "round": 3, "baseVersion": 7, "samples": 120},
     "float32", [("dense/kernel", [2, 3], [0.5, -1.25, 3.0, 1e-7, -0.0, 123456.78]),
                 ("dense/bias", [3], [0.1, 0.2, 0.3])]),
    ("float16-rounding", {"type": "update", "task": "mnist", "round": 0}, "float16",
     [("w", [10], [0.1, -2.5, 1 / 3, 1e-7, 5.96e-8, 3.0e-8, 65519.0, 1.00048828125, 1.00146484375, -0.0])]),
    ("int8-ties-and-scale", {"type": "model", "version": 2}, "int8",
     [("a", [5], [127.0, 0.5, 1.5, 2.5, -2.5]), ("zeros", [2], [0.0, 0.0]), ("b", [3], [0.01, -0.02, 0.015])]),
    ("shapes-empty-and-scalar", {"type": "update", "task": "t\u00e2che-\u2713", "round": 1}, "float32",
     [("empty", [0], []), ("scalar", [], [2.0]), ("matrix", [1, 2], [1.0, 2.0])]),
]


def _values(array: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(array, dtype=np.float32).ravel()]


def build() -> dict:
    good = []
    for name, fields, encoding, tensors in CASES:
        arrays = [(tname, np.asarray(values, dtype=np.float32).reshape(shape)) for tname, shape, values in tensors]
        frame = encode_weights(fields, arrays, encoding)
        decoded = decode_weights(frame)
        good.append({
            "name": name, "fields": fields, "encoding": encoding,
            "tensors": [{"name": t, "shape": list(a.shape), "values": _values(a)} for t, a in arrays],
            "frame_hex": frame.hex(), "decoded": _values(decoded.vector),
        })
    valid = bytes.fromhex(good[0]["frame_hex"])
    header_len = struct.unpack_from("<I", valid)[0]
    bad = [
        {"name": "too-short", "frame_hex": "0100", "error": "4-byte header length"},
        {"name": "header-longer-than-frame", "frame_hex": (struct.pack("<I", 10_000) + valid[4:]).hex(),
         "error": "header claims"},
        {"name": "header-not-json", "frame_hex": (struct.pack("<I", 4) + b"{no}").hex(), "error": "not UTF-8 JSON"},
        {"name": "payload-truncated", "frame_hex": valid[:-4].hex(), "error": "payload has"},
        {"name": "unknown-encoding", "frame_hex": _rewrite(valid, header_len, "float32", "float64").hex(),
         "error": "Unknown encoding"},
    ]
    return {"about": "Written by tests/vectors/make_codec_vectors.py from disco_client/codec.py.", "good": good,
            "bad": bad}


def _rewrite(frame: bytes, header_len: int, old: str, new: str) -> bytes:
    header = frame[4:4 + header_len].replace(old.encode(), new.encode())
    return frame[:4] + header + frame[4 + header_len:]


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")
