"""The wire codec for weight messages (its JavaScript twin is ``static/disco/codec.js``).

A weight message is one binary WebSocket frame::

    u32 little-endian n | n bytes of UTF-8 JSON header (space-padded) | payload

The header is canonical JSON (sorted keys, no spaces, integers and strings only) so both
codecs produce the same bytes; it is padded with spaces so the payload starts on an
8-byte boundary, which lets ``numpy.frombuffer`` view float32 payloads without a copy.
The header carries the message's own fields (type, task, round, ...), ``encoding`` and
``tensors`` (``[{"name", "shape"}]`` in the model's weight-manifest order). The payload
holds the tensors back to back, little-endian:

- ``float32``: 4 bytes a value;
- ``float16``: 2 bytes a value (IEEE half, round to nearest even), each tensor padded to 4 bytes;
- ``int8``: per tensor a float32 scale then one signed byte a value (``value = q * scale``,
  ``scale = max|x| / 127``, ``q = round_half_even(x / scale)``), padded to 4 bytes.

Control messages are plain JSON text frames and need no codec. Nothing here uses pickle.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ENCODINGS = ("float32", "float16", "int8")
_ALIGN = 8


class CodecError(ValueError):
    """A frame that cannot be decoded; the message says what is wrong."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class WeightsMessage:
    """A decoded weight message: its header fields and all tensors as one flat float32 vector."""

    header: dict[str, Any]
    specs: tuple[TensorSpec, ...]
    vector: np.ndarray

    def tensors(self) -> list[np.ndarray]:
        """The tensors, reshaped views into ``vector``."""
        out, start = [], 0
        for spec in self.specs:
            out.append(self.vector[start:start + spec.size].reshape(spec.shape))
            start += spec.size
        return out


def _pad4(n: int) -> int:
    return (-n) % 4


def _tensor_bytes(encoding: str, size: int) -> int:
    if encoding == "float32":
        return 4 * size
    if encoding == "float16":
        return 2 * size + _pad4(2 * size)
    return 4 + size + _pad4(size)


def _canonical(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _quantize_int8(values: np.ndarray) -> tuple[np.float32, np.ndarray]:
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    scale = np.float32(peak / 127.0)
    if scale == 0:
        return scale, np.zeros(values.shape, dtype=np.int8)
    q = np.rint(values.astype(np.float64) / float(scale))
    return scale, np.clip(q, -127, 127).astype(np.int8)


def encode_header(header: Mapping[str, Any]) -> bytes:
    """``u32 LE n | n bytes of canonical JSON``, space-padded so the payload starts on an 8-byte boundary.

    Shared by every binary frame (weights here, uint32 share vectors in ``disco_client/secure.py``).
    """
    raw = _canonical(header)
    raw += b" " * ((-(4 + len(raw))) % _ALIGN)
    return struct.pack("<I", len(raw)) + raw


def encode_weights(fields: Mapping[str, Any], tensors: Sequence[tuple[str, np.ndarray]],
                   encoding: str = "float32") -> bytes:
    """Encode named tensors (in manifest order) with the header ``fields`` into one frame."""
    if encoding not in ENCODINGS:
        raise CodecError(f"Unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}.")
    reserved = {"encoding", "tensors"} & set(fields)
    if reserved:
        raise CodecError(f"Header fields {sorted(reserved)} are set by the codec.")
    arrays = [np.asarray(t, dtype=np.float32, order="C") for _, t in tensors]  # keeps 0-d shapes
    header = {**fields, "encoding": encoding,
              "tensors": [{"name": name, "shape": list(a.shape)} for (name, _), a in zip(tensors, arrays, strict=True)]}
    parts: list[bytes] = [encode_header(header)]
    for array in arrays:
        if encoding == "float32":
            parts.append(array.astype("<f4", copy=False).tobytes())
        elif encoding == "float16":
            data = array.astype("<f2").tobytes()
            parts.append(data + b"\0" * _pad4(len(data)))
        else:
            scale, q = _quantize_int8(array)
            parts += [struct.pack("<f", scale), q.tobytes(), b"\0" * _pad4(q.size)]
    return b"".join(parts)


def read_header(frame: bytes | bytearray | memoryview) -> tuple[dict[str, Any], int]:
    """The header of ``frame`` and the offset of its payload; ``CodecError`` when malformed."""
    view = memoryview(frame)
    if len(view) < 4:
        raise CodecError(f"A weight frame starts with a 4-byte header length; got only {len(view)} bytes.")
    (length,) = struct.unpack_from("<I", view, 0)
    if length > len(view) - 4:
        raise CodecError(f"The header claims {length} bytes but the frame has only {len(view) - 4} after the length.")
    try:
        header = json.loads(bytes(view[4:4 + length]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"The frame header is not UTF-8 JSON ({exc}).") from None
    if not isinstance(header, dict):
        raise CodecError("The frame header must be a JSON object.")
    return header, 4 + length


def _specs(header: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    tensors = header.get("tensors")
    if not isinstance(tensors, list):
        raise CodecError("The header has no 'tensors' list.")
    specs = []
    for index, entry in enumerate(tensors):
        shape = entry.get("shape") if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise CodecError(f"Tensor {index} of the header needs a name and a shape of non-negative integers.")
        specs.append(TensorSpec(name, tuple(shape)))
    return tuple(specs)


@dataclass(frozen=True)
class Segment:
    """Values ``start:stop`` of a frame's vector, stored from byte ``offset`` as ``encoding`` (int8: x ``scale``)."""

    start: int
    stop: int
    offset: int
    encoding: str
    scale: float = 1.0

    @property
    def itemsize(self) -> int:
        return {"float32": 4, "float16": 2, "int8": 1}[self.encoding]


def _checked_tensors(header: Mapping[str, Any], payload_bytes: int,
                     expected: Sequence[TensorSpec] | None) -> tuple[str, tuple[TensorSpec, ...], int]:
    """(encoding, tensor specs, value count) of a header whose payload has ``payload_bytes``, checked: a known
    encoding, the ``expected`` tensors when given, and a payload of exactly the size the tensors need."""
    encoding = header.get("encoding")
    if encoding not in ENCODINGS:
        raise CodecError(f"Unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}.")
    specs = _specs(header)
    if expected is not None and tuple(specs) != tuple(expected):
        raise CodecError(_mismatch(specs, tuple(expected)))
    needed = sum(_tensor_bytes(encoding, s.size) for s in specs)
    if payload_bytes != needed:
        raise CodecError(f"The payload has {payload_bytes:,} bytes but the header's tensors need {needed:,} "
                         f"as {encoding}.")
    return encoding, specs, sum(s.size for s in specs)


def frame_segments(header: Mapping[str, Any], payload_offset: int, frame_bytes: int, *,
                   expected: Sequence[TensorSpec] | None = None) -> tuple[tuple[TensorSpec, ...], tuple[Segment, ...]]:
    """Where each value of a frame lies, from its header alone: the tensor specs and the payload's segments.

    Lets a reader take any range of coordinates with plain file reads (``aggregation.frames``) instead of
    decoding, or mapping, the whole frame. The same checks as ``decode_weights`` (encoding, ``expected``,
    payload size) apply. float32 tensors lie back to back: one segment; float16 and int8 tensors are
    padded: one segment each. An int8 segment's ``scale`` is left 0: it is the float32 stored in the 4 bytes
    before the segment's ``offset``, which the reader reads.
    """
    encoding, specs, total = _checked_tensors(header, frame_bytes - payload_offset, expected)
    if encoding == "float32":
        return specs, (Segment(0, total, payload_offset, encoding),)
    segments, start, pos = [], 0, payload_offset
    for s in specs:
        if encoding == "float16":
            segments.append(Segment(start, start + s.size, pos, encoding))
        else:
            segments.append(Segment(start, start + s.size, pos + 4, encoding))
        start, pos = start + s.size, pos + _tensor_bytes(encoding, s.size)
    return specs, tuple(segments)


def decode_weights(frame: bytes | bytearray | memoryview, *, max_bytes: int | None = None,
                   expected: Sequence[TensorSpec] | None = None, allow_non_finite: bool = False) -> WeightsMessage:
    """Decode a frame into its header and one float32 vector (a zero-copy view for float32).

    Refuses, with a ``CodecError`` that says why: frames over ``max_bytes``, malformed
    headers, payloads whose size disagrees with the shapes, tensors that differ from
    ``expected`` (the model's manifest), and NaN or infinite values.
    """
    if max_bytes is not None and len(frame) > max_bytes:
        raise CodecError(f"The frame has {len(frame):,} bytes, over this task's limit of {max_bytes:,}.")
    header, offset = read_header(frame)
    encoding, specs, total = _checked_tensors(header, len(frame) - offset, expected)
    if encoding == "float32":
        vector = np.frombuffer(frame, dtype="<f4", count=total, offset=offset)
    elif encoding == "float16":
        vector = np.empty(total, dtype=np.float32)
        start, pos = 0, offset
        for s in specs:
            vector[start:start + s.size] = np.frombuffer(frame, dtype="<f2", count=s.size, offset=pos)
            start, pos = start + s.size, pos + _tensor_bytes(encoding, s.size)
    else:
        vector = np.empty(total, dtype=np.float32)
        start, pos = 0, offset
        for s in specs:
            scale = np.frombuffer(frame, dtype="<f4", count=1, offset=pos)[0]
            q = np.frombuffer(frame, dtype=np.int8, count=s.size, offset=pos + 4)
            np.multiply(q, scale, out=vector[start:start + s.size], dtype=np.float32)
            start, pos = start + s.size, pos + _tensor_bytes(encoding, s.size)
    if not allow_non_finite and not np.isfinite(vector).all():
        bad = int(np.flatnonzero(~np.isfinite(vector))[0])
        raise CodecError(f"The update holds NaN or infinite values (first in tensor '{_owner(specs, bad)}'): "
                         "check the learning rate and the data, then send a finite update.")
    return WeightsMessage(header=header, specs=specs, vector=vector)


def _owner(specs: Sequence[TensorSpec], index: int) -> str:
    for spec in specs:
        if index < spec.size:
            return spec.name
        index -= spec.size
    return "?"


def _mismatch(got: tuple[TensorSpec, ...], want: tuple[TensorSpec, ...]) -> str:
    if len(got) != len(want):
        return f"The update has {len(got)} tensors but the model has {len(want)}."
    for g, w in zip(got, want, strict=True):
        if g != w:
            return (f"Tensor '{g.name}' has shape {list(g.shape)} but the model expects '{w.name}' with shape "
                    f"{list(w.shape)}: the update was made from another model.")
    return "The update's tensors differ from the model's."  # pragma: no cover
