"""Weight updates that arrive in parts, spooled to disk instead of held in memory.

A whole model in one WebSocket message makes the server hold every participant's update
in memory at once (the WebSocket library assembles each message before the consumer sees
it). So a client may announce an update with the text frame
``{"type": "update_begin", "bytes": N}`` and send its N-byte weight message (the same
bytes ``codec.encode_weights`` produces) as consecutive binary frames of at most
``PART_BYTES``. Each part is appended to a temporary file as it arrives; the finished
file is decoded memory-mapped and, once accepted, moved (not copied) into storage.

The receiving side is ``IncomingUpdate``; the sending side is ``disco_client.parts.send_update``
(the Python client) and ``sendUpdate`` in ``static/disco/federated.js``.

What a stranger can make the server spool is bounded twice: a connection has at most one
update in flight (a new announcement discards the unfinished one), of at most the size of
the round's model (``rounds.max_update_bytes``); and the unfinished updates of one task
together hold at most ``DISCO_MAX_SPOOLED_BYTES_PER_TASK`` in this web process
(``SpoolBudget``): an announcement over it is refused before any file is made.
"""

from __future__ import annotations

import threading

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile

from disco_client.codec import CodecError


class SpoolFullError(CodecError):
    """The task's unfinished updates already hold as many bytes as this process spools for one task."""

    code = "spool_full"


class SpoolBudget:
    """Bytes announced by the unfinished updates of each task, in this process.

    Reserved in full when an update is announced, released when it is stored, refused or
    dropped. Per process: with several web processes the bound is per process too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reserved: dict[str, int] = {}

    def reserve(self, task_id: str, nbytes: int) -> None:
        limit = int(settings.DISCO_MAX_SPOOLED_BYTES_PER_TASK)
        with self._lock:
            held = self._reserved.get(task_id, 0)
            if held + nbytes > limit:
                raise SpoolFullError(
                    f"The server is already receiving {held:,} bytes of unfinished updates for this task; yours "
                    f"({nbytes:,} bytes) would pass the limit of {limit:,} (setting DISCO_MAX_SPOOLED_BYTES_PER_TASK). "
                    "Nothing was kept: announce your update again in a few seconds.")
            self._reserved[task_id] = held + nbytes

    def release(self, task_id: str, nbytes: int) -> None:
        with self._lock:
            left = self._reserved.get(task_id, 0) - nbytes
            if left > 0:
                self._reserved[task_id] = left
            else:
                self._reserved.pop(task_id, None)

    def reserved(self, task_id: str) -> int:
        with self._lock:
            return self._reserved.get(task_id, 0)


SPOOL_BUDGET = SpoolBudget()


class IncomingUpdate:
    """One announced update being received: a temporary file that grows part by part."""

    def __init__(self, total_bytes: int, *, max_bytes: int, task_id: str = "", budget: SpoolBudget | None = None):
        if isinstance(total_bytes, bool) or not isinstance(total_bytes, int) or total_bytes < 4:
            raise CodecError("'update_begin' needs 'bytes': the size of the whole weight message, an integer.")
        if total_bytes > max_bytes:
            raise CodecError(f"The announced update has {total_bytes:,} bytes, over this task's limit of "
                             f"{max_bytes:,} (the round's model as float32 weights plus a header).")
        self.total_bytes = total_bytes
        self.received = 0
        self.task_id = task_id
        self._budget = budget or SPOOL_BUDGET
        self._budget.reserve(task_id, total_bytes)  # before any file exists
        self._released = False
        try:
            self.file = TemporaryUploadedFile("update.frame", "application/octet-stream", total_bytes, None)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._budget.release(self.task_id, self.total_bytes)

    @property
    def complete(self) -> bool:
        return self.received == self.total_bytes

    def append(self, part: bytes) -> None:
        """Write the next part; more bytes than announced discards the update."""
        if self.received + len(part) > self.total_bytes:
            self.discard()
            raise CodecError(f"The parts add up to more than the {self.total_bytes:,} bytes announced in "
                             "'update_begin'; the update is discarded: announce it again and resend it.")
        self.file.write(part)
        self.received += len(part)

    def message_bytes(self) -> np.ndarray:
        """The whole received message, memory-mapped read-only (``codec.decode_weights`` takes it as is)."""
        self.file.flush()
        return np.memmap(self.file.temporary_file_path(), dtype=np.uint8, mode="r")

    def discard(self) -> None:
        """Delete the temporary file (a no-op once storage has moved it away) and free its reservation."""
        try:
            self.file.close()
        finally:
            self._release()
