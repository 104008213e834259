"""Where the rules read the updates from: N updates of P floats, one block of coordinates at a time.

A round's N stored updates would make an N x P float32 matrix: 3.3 GB at N=500, P=1.66M, before
Krum's float64 copy. So no rule holds it. Every rule reads an ``UpdateSource``: its ``count`` (N),
``size`` (P) and ``block(start, stop)``, the N x (stop - start) float32 block of coordinates
``start:stop``. The rules work block by block (median, trimmed mean: per coordinate; centered
clipping: norms over one pass, the clipped mean over a second) or accumulate pairwise distances
block by block (Krum), so their memory is bounded by the source's ``block_bytes``, not by N x P.

``MatrixSource`` wraps an in-memory matrix (the tests and the pure-matrix API: every rule still
accepts a matrix); by default its one block is the whole matrix, so the matrix path computes as
before, without a copy. ``aggregation.frames.StoredFrames`` reads the stored frames with plain file
reads, which do not stay resident the way touched pages of a memory map do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ._checks import as_matrix


@runtime_checkable
class UpdateSource(Protocol):
    """N updates of P float32 values, read by blocks of coordinates."""

    @property
    def count(self) -> int:
        """N, the number of updates (at least 1)."""

    @property
    def size(self) -> int:
        """P, the number of values in each update."""

    @property
    def block_bytes(self) -> int | None:
        """The budget of one N x block float32 block in bytes; None: the whole matrix in one block."""

    def block(self, start: int, stop: int, rows: Sequence[int] | None = None) -> np.ndarray:
        """Coordinates ``start:stop`` of every update (or of ``rows``, in that order): a float32 array of
        shape (N or len(rows), stop - start). It may be a view: the rules never write to it."""


class MatrixSource:
    """An N x P matrix as a source; ``block_columns`` splits it into blocks (the tests), None keeps it whole."""

    def __init__(self, matrix: np.ndarray, block_columns: int | None = None) -> None:
        self.matrix = as_matrix(matrix)
        if block_columns is not None and block_columns < 1:
            raise ValueError(f"A block holds at least one column; got {block_columns}.")
        self.block_columns = block_columns

    @property
    def count(self) -> int:
        return self.matrix.shape[0]

    @property
    def size(self) -> int:
        return self.matrix.shape[1]

    @property
    def block_bytes(self) -> int | None:
        return None if self.block_columns is None else 4 * self.count * self.block_columns

    def block(self, start: int, stop: int, rows: Sequence[int] | None = None) -> np.ndarray:
        if rows is None:
            return self.matrix[:, start:stop]
        return self.matrix[np.asarray(rows, dtype=np.intp), start:stop]


def as_source(updates: np.ndarray | UpdateSource) -> UpdateSource:
    """``updates`` when it is a source, else the matrix as one (checked: finite 2-D float32, N >= 1)."""
    if isinstance(updates, UpdateSource) and not isinstance(updates, np.ndarray):
        if updates.count < 1:
            raise ValueError("Updates must be N >= 1 updates; got none.")
        return updates
    return MatrixSource(updates)


def block_width(source: UpdateSource, copies: int = 1, rows: int | None = None) -> int:
    """Columns per block so that ``copies`` float32 blocks of ``rows`` (default N) rows fit the source's budget.

    A rule that makes temporaries of the block's size (a partition's copy, a float64 copy) asks for
    more ``copies``, so its peak stays near the budget whatever N and P are.
    """
    if source.block_bytes is None:
        return max(1, source.size)
    per_column = 4 * (source.count if rows is None else rows) * copies
    return max(1, min(source.size, source.block_bytes // per_column))


def blocks(source: UpdateSource, copies: int = 1,
           rows: Sequence[int] | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, block)`` over the whole width of the source, in order."""
    width = block_width(source, copies, None if rows is None else len(rows))
    for start in range(0, source.size, width):
        stop = min(start + width, source.size)
        yield start, stop, source.block(start, stop, rows)


def row(source: UpdateSource, index: int) -> np.ndarray:
    """Update ``index`` as a new float32 vector of P values, read block by block."""
    out = np.empty(source.size, dtype=np.float32)
    for start, stop, block in blocks(source, rows=[index]):
        out[start:stop] = block[0]
    return out


def rows(source: UpdateSource) -> Iterator[np.ndarray]:
    """Every update in turn, each a new P-vector (what the streaming means read, one at a time)."""
    for index in range(source.count):
        yield row(source, index)
