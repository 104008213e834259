"""How many announced updates a web process lets clients send at once.

Without a limit, a burst of hundreds of updates arrives interleaved: the server reads a little of every
socket in turn, so every message is half-assembled at once and none can be spooled before nearly all
have arrived (at 500 participants one daphne held all 500 updates, 600+ MiB). So the welcome offers
``announceFrom``: a client announces every update of at least that many bytes (``update_begin``) and
sends its bytes only after the server's ``{"type": "update_go", "bytes": N}``. A process grants at most
``DISCO_UPLOAD_SLOTS`` uploads at a time, in the order they were announced; the others wait their turn
in the client, which holds its own update anyway. A slot is freed when the last part has arrived, the
upload is dropped (a new announcement, a refusal, the client leaving), or no part came for
``DISCO_UPLOAD_IDLE_SECONDS`` after the grant or the last part (so a client that announces and never
sends cannot keep the others waiting).

A client that sends without waiting is still served as before: the limit bounds the memory of clients
that cooperate, which are this project's own (``disco_client.parts.send_update``, ``sendUpdate`` in
``static/disco/federated.js``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

from django.conf import settings


class UploadSlots:
    """First come, first granted; everything runs on the web process's event loop thread (no locks).

    ``request(holder, grant)`` calls ``grant()`` now if a slot is free, else when one frees up;
    ``release(holder)`` frees the holder's slot, or takes it out of the queue if it was still waiting.
    """

    def __init__(self, size: int | None = None) -> None:
        self._size = size
        self.holders: set[Hashable] = set()
        self.waiting: OrderedDict[Hashable, Callable[[], None]] = OrderedDict()

    @property
    def size(self) -> int:
        return max(1, int(self._size if self._size is not None else settings.DISCO_UPLOAD_SLOTS))

    def request(self, holder: Hashable, grant: Callable[[], None]) -> None:
        self.release(holder)  # one upload per holder: a new request replaces the old one
        if len(self.holders) < self.size:
            self.holders.add(holder)
            grant()
        else:
            self.waiting[holder] = grant

    def release(self, holder: Hashable) -> None:
        self.waiting.pop(holder, None)
        if holder not in self.holders:
            return
        self.holders.discard(holder)
        while self.waiting and len(self.holders) < self.size:
            nxt, grant = self.waiting.popitem(last=False)
            self.holders.add(nxt)
            grant()

    def clear(self) -> None:
        self.holders.clear()
        self.waiting.clear()


UPLOAD_SLOTS = UploadSlots()
