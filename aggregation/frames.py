"""The round's stored update frames as an ``UpdateSource``: blocks of coordinates read with plain file reads.

Why not memory maps: every page of a file-backed map that numpy touches stays resident, and counts in
the worker's RSS, until the map is closed; reading blocks of coordinates from N maps would keep
touching pages of all N until the whole N x P had been brought in. ``StoredFrames`` instead reads
``block(start, stop)`` at each frame's data offset with ``readinto`` straight into the N x block
array (float32 frames; float16 and int8 go through a small scratch buffer), so the worker holds one
block and the page cache, which the kernel may drop, holds the files.

Django-free: it takes a function that opens a stored name for reading (``aggregation.weights.stored_frames``
passes the media storage's).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import BinaryIO

import numpy as np

from disco_client.codec import CodecError, Segment, TensorSpec, frame_segments, read_header

Opener = Callable[[str], BinaryIO]


def _read_exactly(fh: BinaryIO, offset: int, into: memoryview) -> None:
    fh.seek(offset)
    done = 0
    while done < len(into):
        got = fh.readinto(into[done:])
        if not got:
            raise CodecError(f"The stored frame ended {len(into) - done} bytes early.")
        done += got


def _read(fh: BinaryIO, offset: int, count: int) -> bytes:
    buffer = bytearray(count)
    _read_exactly(fh, offset, memoryview(buffer))
    return bytes(buffer)


class StoredFrames:
    """N stored weight frames of the same model, read a block of coordinates at a time.

    Every frame's header is read and checked when the source is made (its tensors against
    ``expected``, its size against its header): a frame that cannot be read fails the round
    before any work is done, as decoding it whole would. Values are not checked for NaN or infinity
    (they were when the update arrived); the aggregate is, at the end.
    """

    def __init__(self, names: Sequence[str], open_file: Opener, *, expected: Sequence[TensorSpec] | None = None,
                 block_bytes: int = 64 << 20) -> None:
        if block_bytes < 1:
            raise ValueError(f"The block budget is at least one byte; got {block_bytes}.")
        self.names = list(names)
        self._open = open_file
        self._block_bytes = int(block_bytes)
        self._segments: list[tuple[Segment, ...]] = [self._layout(name, expected) for name in self.names]
        sizes = {segments[-1].stop if segments else 0 for segments in self._segments}
        if len(sizes) > 1:
            raise CodecError(f"The stored updates have different sizes: {sorted(sizes)}.")
        self._size = sizes.pop() if sizes else 0

    def _layout(self, name: str, expected: Sequence[TensorSpec] | None) -> tuple[Segment, ...]:
        with self._open(name) as fh:
            (length,) = struct.unpack("<I", _read(fh, 0, 4))
            frame_bytes = fh.seek(0, 2)
            if length > frame_bytes - 4:
                raise CodecError(f"The header claims {length} bytes but the frame has only {frame_bytes - 4} "
                                 "after the length.")
            header, offset = read_header(_read(fh, 0, 4 + length))
            _, segments = frame_segments(header, offset, frame_bytes, expected=expected)
            if segments and segments[0].encoding == "int8":
                segments = tuple(replace(s, scale=float(np.frombuffer(_read(fh, s.offset - 4, 4), dtype="<f4")[0]))
                                 for s in segments)
            return segments

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def size(self) -> int:
        return self._size

    @property
    def block_bytes(self) -> int:
        return self._block_bytes

    def block(self, start: int, stop: int, rows: Sequence[int] | None = None) -> np.ndarray:
        if not 0 <= start <= stop <= self._size:
            raise ValueError(f"Coordinates {start}:{stop} are outside 0:{self._size}.")
        chosen = range(self.count) if rows is None else [int(r) for r in rows]
        out = np.empty((len(chosen), stop - start), dtype=np.float32)
        for i, index in enumerate(chosen):
            with self._open(self.names[index]) as fh:
                self._read_row(fh, self._segments[index], start, stop, out[i])
        return out

    @staticmethod
    def _read_row(fh: BinaryIO, segments: Sequence[Segment], start: int, stop: int, out: np.ndarray) -> None:
        """Values ``start:stop`` of one frame into ``out`` (a contiguous float32 row)."""
        for seg in segments:
            a, b = max(start, seg.start), min(stop, seg.stop)
            if a >= b:
                continue
            target = out[a - start:b - start]
            offset = seg.offset + (a - seg.start) * seg.itemsize
            if seg.encoding == "float32":
                _read_exactly(fh, offset, memoryview(target).cast("B"))
                if sys.byteorder != "little":  # pragma: no cover - the payload is little-endian
                    target.byteswap(inplace=True)
            elif seg.encoding == "float16":
                target[:] = np.frombuffer(_read(fh, offset, 2 * (b - a)), dtype="<f2")
            else:  # int8, as codec.decode_weights computes it
                q = np.frombuffer(_read(fh, offset, b - a), dtype=np.int8)
                np.multiply(q, np.float32(seg.scale), out=target, dtype=np.float32)
