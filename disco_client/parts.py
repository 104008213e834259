"""Weight messages in parts: how a client sends an update larger than one WebSocket message.

A whole model in one WebSocket message makes the server hold every participant's update in
memory at once (the WebSocket library assembles each message before the application sees it),
and daphne refuses messages over ``DISCO_WS_MAX_MESSAGE_BYTES`` (a part plus 64 KiB by default).
So a client announces a large update with the text frame ``{"type": "update_begin", "bytes": N}``
and sends its N-byte weight message (the bytes ``codec.encode_weights`` produces) as consecutive
binary frames of at most ``PART_BYTES``. The server's receiving side is
``aggregation.incoming.IncomingUpdate``; the browser's sending side ``sendUpdate`` in
``static/disco/federated.js``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

# The largest binary frame a client sends; the server's message limit is derived from it
# (``disco_site.limits.WS_PART_BYTES`` is this constant).
PART_BYTES = 1 << 20


async def send_update(ws: Any, frame: bytes, part_bytes: int = PART_BYTES, *, announce_from: int | None = None,
                      granted: Callable[[], Awaitable[Any]] | None = None) -> int:
    """Send the weight message ``frame`` over a ``websockets`` connection: whole when it is small, else
    announced and in parts of at most ``part_bytes`` (views into ``frame``, no copies).

    ``announce_from`` and ``granted``: the server's welcome offered upload slots (its ``announceFrom``,
    ``aggregation.upload_slots``): a frame of at least ``announce_from`` bytes is announced, and its bytes
    are sent once ``granted()`` has returned (it waits for the server's ``update_go``; it raises if the
    server refuses the announcement instead). Without them (an older server), nothing waits.

    Returns the message bytes sent: the frame, plus the announcement when there was one.
    """
    wait = granted is not None and announce_from is not None and len(frame) >= announce_from
    if not wait and len(frame) <= part_bytes:
        await ws.send(frame)
        return len(frame)
    announcement = json.dumps({"type": "update_begin", "bytes": len(frame)})
    await ws.send(announcement)
    if wait:
        await granted()
    view = memoryview(frame)
    for start in range(0, len(view), part_bytes):
        await ws.send(view[start:start + part_bytes])
    return len(announcement) + len(frame)


__all__ = ["PART_BYTES", "send_update"]
