"""Every WebSocket message a client sends fits daphne's limit, DISCO_WS_MAX_MESSAGE_BYTES."""

from __future__ import annotations

import pytest
from django.conf import settings

from disco_client.parts import PART_BYTES, send_update
from disco_site.limits import WS_MIN_MESSAGE_BYTES, daphne_ws_args, ws_max_message_bytes


class Recorder:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def send(self, data) -> None:
        self.sizes.append(len(data.encode() if isinstance(data, str) else bytes(data)))


@pytest.mark.parametrize("size", [10, PART_BYTES, PART_BYTES + 1, 5 * PART_BYTES + 7])
async def test_the_python_client_sends_nothing_over_the_limit(size):
    ws = Recorder()
    sent = await send_update(ws, b"\1" * size)
    assert max(ws.sizes) <= settings.DISCO_WS_MAX_MESSAGE_BYTES
    assert sum(ws.sizes) == sent and (len(ws.sizes) == 1) == (size <= PART_BYTES)


def test_the_limit_is_a_part_plus_header_room_and_daphne_gets_it():
    assert settings.DISCO_WS_MAX_MESSAGE_BYTES == (1 << 20) + 64 * 1024
    assert daphne_ws_args({}) == ["--websocket-max-message-size", "1114112", "--websocket-max-frame-size", "1114112"]
    assert ws_max_message_bytes({"DISCO_WS_MAX_MESSAGE_BYTES": "4194304"}) == 4194304
    with pytest.raises(ValueError, match="at least 1,052,672 bytes, one update part"):
        ws_max_message_bytes({"DISCO_WS_MAX_MESSAGE_BYTES": str(WS_MIN_MESSAGE_BYTES - 1)})


async def test_with_upload_slots_the_python_client_sends_a_large_updates_bytes_only_once_granted():
    """The welcome's ``announceFrom`` (aggregation.upload_slots): announce, wait for ``update_go``, then send."""
    ws, log = Recorder(), []

    async def granted() -> None:
        log.append(len(ws.sizes))  # what had been sent when the client started waiting

    sent = await send_update(ws, b"\1" * 5000, 2048, announce_from=4096, granted=granted)
    assert log == [1] and len(ws.sizes) == 4 and sum(ws.sizes[1:]) == 5000 and sent == sum(ws.sizes)
    small = Recorder()
    await send_update(small, b"\1" * 100, announce_from=4096, granted=granted)
    assert small.sizes == [100] and log == [1]  # under announceFrom: whole, nothing asked
