"""Relay framing: how peer-to-peer payloads travel through the server, in parts of at most 1 MiB.

Twin of ``static/disco/relay.js``; both are tested on ``tests/vectors/relay.json``. Importable
without Django: the signalling consumer and the Python peer both use it.

A relay frame is ``u32 little-endian n | n bytes of JSON envelope | payload``. A peer sends
``{"to", "round", "kind", "part", "parts"}``; the server forwards ``{"from", "round", "kind",
"part", "parts"}`` with the payload untouched. A payload larger than ``RELAY_PART_BYTES`` is
split into ``parts`` frames (``part`` = 0 .. parts - 1, in order) that the receiver joins again
(``RelayReassembler``): daphne refuses WebSocket messages over about 1 MiB + 64 KiB and
assembles each message in full in memory, so no frame may be larger.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

RELAY_PART_BYTES = 1 << 20
RELAY_SLACK = 64 * 1024  # room for the envelope (and, in the server's limit, a little more)


class RelayError(ValueError):
    """A malformed relay frame or part; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def encode_relay_frame(envelope: dict[str, Any], payload: bytes | bytearray | memoryview) -> bytes:
    """``u32 LE n | JSON envelope | payload`` (compact JSON, the same bytes as ``JSON.stringify``)."""
    raw = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
    return struct.pack("<I", len(raw)) + raw + bytes(payload)


def decode_relay_frame(frame: bytes | bytearray | memoryview) -> tuple[dict[str, Any], memoryview]:
    """The envelope and payload (a view) of a relay frame; ``RelayError("bad_relay")`` when malformed."""
    view = memoryview(frame)
    if len(view) < 4:
        raise RelayError("bad_relay", "A relayed frame starts with a 4-byte header length.")
    (length,) = struct.unpack_from("<I", view, 0)
    if length > len(view) - 4:
        raise RelayError("bad_relay", f"The relay header claims {length} bytes but the frame has only "
                                      f"{len(view) - 4} after the length.")
    try:
        envelope = json.loads(bytes(view[4:4 + length]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        envelope = None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("kind"), str):
        raise RelayError("bad_relay", 'The relay header is JSON {"to": peer id, "round": n, "kind": "...", '
                                      '"part": i, "parts": n}.')
    part, parts = envelope.get("part", 0), envelope.get("parts", 1)
    if not (_whole(part) and _whole(parts) and 0 <= part < parts):
        raise RelayError("bad_relay", f"A relayed part has whole numbers 0 <= part < parts (got part {part!r} of "
                                      f"{parts!r}).")
    return envelope, view[4 + length:]


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def split_relay(envelope: dict[str, Any], payload: bytes | bytearray | memoryview,
                part_bytes: int = RELAY_PART_BYTES) -> list[bytes]:
    """The relay frames that carry ``payload``: parts of at most ``part_bytes`` bytes, in order."""
    if part_bytes < 1:
        raise ValueError(f"A relayed part holds at least one byte (got {part_bytes}).")
    data = memoryview(bytes(payload) if not isinstance(payload, (bytes, memoryview)) else payload)
    parts = max(1, math.ceil(len(data) / part_bytes))
    return [encode_relay_frame({**envelope, "part": i, "parts": parts}, data[i * part_bytes:(i + 1) * part_bytes])
            for i in range(parts)]


@dataclass
class RelayReassembler:
    """Relayed parts back into whole payloads, per ``(from, round, kind)``.

    ``max_bytes`` bounds one payload (a memory guard): a sender that announces or sends more is refused.
    """

    max_bytes: int
    part_bytes: int = RELAY_PART_BYTES
    _pending: dict[tuple[str, Any, str], dict[str, Any]] = field(default_factory=dict)

    def push(self, envelope: dict[str, Any], payload: bytes | memoryview) -> tuple[tuple[str, Any, str], bytes] | None:
        """Take one part; the key and the whole payload when its last part arrives, else None."""
        key = (str(envelope.get("from")), envelope.get("round"), envelope["kind"])
        part, parts = envelope.get("part", 0), envelope.get("parts", 1)
        if parts > math.ceil(self.max_bytes / self.part_bytes) + 1 or len(payload) > self.part_bytes:
            self._pending.pop(key, None)
            raise RelayError("too_large", f"The relayed {key[2]} from {key[0]} is over this peer's limit of "
                                          f"{self.max_bytes:,} bytes ({parts} parts, this one {len(payload):,} bytes).")
        entry = self._pending.get(key)
        if part == 0:
            entry = self._pending[key] = {"parts": parts, "next": 0, "chunks": [], "bytes": 0}
        if entry is None or entry["parts"] != parts or entry["next"] != part:
            self._pending.pop(key, None)
            raise RelayError("bad_relay", f"Part {part} of {parts} of the relayed {key[2]} from {key[0]} came out of "
                                          "order: the payload is dropped.")
        entry["chunks"].append(bytes(payload))
        entry["bytes"] += len(payload)
        entry["next"] += 1
        if entry["bytes"] > self.max_bytes:
            del self._pending[key]
            raise RelayError("too_large", f"The relayed {key[2]} from {key[0]} is over this peer's limit of "
                                          f"{self.max_bytes:,} bytes.")
        if entry["next"] < parts:
            return None
        del self._pending[key]
        return key, b"".join(entry["chunks"])

    def discard_round(self, round_number: int) -> None:
        """Forget half-received payloads of rounds up to ``round_number``."""
        for key in [k for k in self._pending if isinstance(k[1], int) and k[1] <= round_number]:
            del self._pending[key]


__all__ = ["RELAY_PART_BYTES", "RELAY_SLACK", "RelayError", "RelayReassembler", "decode_relay_frame",
           "encode_relay_frame", "split_relay"]
