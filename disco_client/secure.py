"""Exact secure aggregation: fixed-point encoding and additive secret sharing modulo 2**32.

Twin of ``static/disco/secure.js`` (same names in camelCase); both are tested on the vectors
of ``tests/vectors/secure.json``. DISCO shares floats, which loses precision; here every
peer works in the ring of integers mod 2**32, so reconstruction is exact and the only error
is the fixed-point quantization, at most ``1 / (2 * scale)`` a coordinate on the mean.

A round among ``n`` peers (the protocol lives in the peer clients):

1. each peer clips its update to ``[-R, R]`` (``R`` = the task's ``max_share_value``) and
   encodes it with ``encode_fixed(x, R, fixed_point_scale(R, n))``;
2. ``make_shares(q, n)`` splits it into ``n`` uniformly random vectors summing to ``q``;
   share ``j`` goes to peer ``j`` (a peer keeps its own), as a uint32 frame ``{"type": "share"}``;
3. each peer adds the shares it holds (``add_shares``) and broadcasts that partial sum;
4. everyone adds the ``n`` partials and decodes: ``decode_mean(total, scale, n)``.

Any ``n - 1`` shares of a vector are uniformly random, so a peer (or a relaying server)
learns nothing about another peer's update beyond the sum. ``scale`` is chosen so that the
sum of ``n`` encoded values fits in int32: the sum never wraps, and decoding is exact.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .codec import CodecError, encode_header, read_header

INT32_MAX = 2**31 - 1
U32_ENCODING = "uint32"
_U32_TENSOR = "vector"


def fixed_point_scale(max_share_value: float, peers: int) -> int:
    """``S = 2**floor(log2((2**31 - 1) / (peers * max_share_value)))``: the sum of ``peers`` values never overflows.

    Raises ``ValueError`` when even ``S = 1`` could overflow (``peers * max_share_value`` over 2**31 - 1).
    """
    if not (isinstance(max_share_value, (int, float)) and math.isfinite(max_share_value) and max_share_value > 0):
        raise ValueError(f"The largest shared value must be a positive number (got {max_share_value!r}).")
    if isinstance(peers, bool) or not isinstance(peers, int) or peers < 1:
        raise ValueError(f"Secure aggregation needs a whole number of peers >= 1 (got {peers!r}).")
    ratio = INT32_MAX / (peers * float(max_share_value))
    if ratio < 1:
        raise ValueError(f"{peers} peers x largest value {max_share_value:g} overflows 32-bit integers: lower the "
                         "task's maxShareValue (the range of the shared values).")
    exponent = math.floor(math.log2(ratio))
    while 2.0**exponent > ratio:  # log2 may round up just below a power of two: make it exact
        exponent -= 1
    while 2.0 ** (exponent + 1) <= ratio:
        exponent += 1
    return 2**exponent


def encode_fixed(x: np.ndarray, max_share_value: float, scale: int) -> np.ndarray:
    """Clip ``x`` to ``[-R, R]``, round ``x * scale`` half to even, and return it as uint32 (two's complement)."""
    values = np.asarray(x, dtype=np.float32).ravel()
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"The update holds NaN or infinite values (first at index {bad}): it cannot be shared.")
    limit = float(max_share_value)
    scaled = np.rint(np.clip(values.astype(np.float64), -limit, limit) * float(scale))
    return scaled.astype(np.int64).astype(np.uint32)  # wraps negatives mod 2**32


def _random_u32(size: int) -> np.ndarray:
    """``size`` uniformly random uint32 values from the operating system's CSPRNG."""
    return np.frombuffer(secrets.token_bytes(4 * size), dtype="<u4").astype(np.uint32, copy=False)


def make_shares(q: np.ndarray, peers: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """``peers`` uint32 vectors that sum to ``q`` mod 2**32.

    The first ``peers - 1`` are uniformly random (from ``secrets``; pass ``rng`` only in
    tests, a seeded numpy generator is not secret), the last makes the sum.
    """
    if isinstance(peers, bool) or not isinstance(peers, int) or peers < 1:
        raise ValueError(f"Shares are made for a whole number of peers >= 1 (got {peers!r}).")
    q = np.asarray(q)
    if q.dtype != np.uint32:
        raise ValueError(f"Shares are made from a uint32 vector (encode_fixed's output), not {q.dtype}.")
    size = q.size
    shares = [rng.integers(0, 2**32, size=size, dtype=np.uint32) if rng is not None else _random_u32(size)
              for _ in range(peers - 1)]
    last = q.ravel().copy()
    for share in shares:
        np.subtract(last, share, out=last)  # uint32 arithmetic wraps mod 2**32
    return [*shares, last]


def add_shares(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The sum of uint32 vectors mod 2**32."""
    if not vectors:
        raise ValueError("There are no shares to add.")
    total = np.array(vectors[0], dtype=np.uint32, copy=True).ravel()
    for vector in vectors[1:]:
        vector = np.asarray(vector)
        if vector.dtype != np.uint32 or vector.size != total.size:
            raise ValueError(f"Every share must be a uint32 vector of {total.size} values "
                             f"(got {vector.dtype} with {vector.size}).")
        np.add(total, vector.ravel(), out=total)
    return total


def decode_fixed(total: np.ndarray, scale: int) -> np.ndarray:
    """The float32 value of a uint32 fixed-point vector (read as int32, divided by ``scale``)."""
    signed = np.asarray(total, dtype=np.uint32).view(np.int32)
    return (signed.astype(np.float64) / float(scale)).astype(np.float32)


def decode_mean(total: np.ndarray, scale: int, peers: int) -> np.ndarray:
    """The mean of ``peers`` encoded updates from the sum of all their shares (one rounding, in float64)."""
    signed = np.asarray(total, dtype=np.uint32).view(np.int32)
    return (signed.astype(np.float64) / (float(scale) * peers)).astype(np.float32)


def quantization_bound(scale: int) -> float:
    """The largest error a coordinate of the decoded mean can have, before the final float32 rounding."""
    return 1.0 / (2.0 * scale)


def encode_u32_frame(fields: Mapping[str, Any], vector: np.ndarray) -> bytes:
    """A binary frame like the codec's: its header (``encoding: "uint32"``) then the raw little-endian uint32s."""
    reserved = {"encoding", "tensors"} & set(fields)
    if reserved:
        raise CodecError(f"Header fields {sorted(reserved)} are set by the codec.")
    data = np.asarray(vector)
    if data.dtype != np.uint32:
        raise CodecError(f"A uint32 frame carries a uint32 vector, not {data.dtype}.")
    header = {**fields, "encoding": U32_ENCODING, "tensors": [{"name": _U32_TENSOR, "shape": [int(data.size)]}]}
    return encode_header(header) + data.astype("<u4", copy=False).tobytes()


def decode_u32_frame(frame: bytes | bytearray | memoryview, *, max_bytes: int | None = None,
                     expected_size: int | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The header and the uint32 vector (a zero-copy view) of a frame made by ``encode_u32_frame``."""
    if max_bytes is not None and len(frame) > max_bytes:
        raise CodecError(f"The frame has {len(frame):,} bytes, over this task's limit of {max_bytes:,}.")
    header, offset = read_header(frame)
    if header.get("encoding") != U32_ENCODING:
        raise CodecError(f"Expected a uint32 frame but its encoding is {header.get('encoding')!r}.")
    tensors = header.get("tensors")
    shape = tensors[0].get("shape") if isinstance(tensors, list) and len(tensors) == 1 and isinstance(
        tensors[0], dict) else None
    if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] >= 0):
        raise CodecError("A uint32 frame's header has one tensor with a one-dimensional shape.")
    size = shape[0]
    if expected_size is not None and size != expected_size:
        raise CodecError(f"The frame holds {size:,} values but the model has {expected_size:,} parameters.")
    if len(frame) - offset != 4 * size:
        raise CodecError(f"The payload has {len(frame) - offset:,} bytes but {size:,} uint32 values need {4 * size:,}.")
    return header, np.frombuffer(frame, dtype="<u4", count=size, offset=offset)


__all__ = ["INT32_MAX", "add_shares", "decode_fixed", "decode_mean", "decode_u32_frame", "encode_fixed",
           "encode_u32_frame", "fixed_point_scale", "make_shares", "quantization_bound"]
