"""In-process WebSocket helpers shared by the consumer tests."""

from __future__ import annotations

import json

from channels.testing import WebsocketCommunicator

from disco_site.asgi import application


async def connect(path: str) -> WebsocketCommunicator:
    """Connect to ``path`` (e.g. ``/ws/federated/fed/``) as a browser on this host would."""
    communicator = WebsocketCommunicator(application, path,
                                         headers=[(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1")])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive(communicator: WebsocketCommunicator, kind: str, timeout: float = 10) -> dict:
    """The next JSON message of type ``kind``, skipping others."""
    while True:
        message = json.loads(await communicator.receive_from(timeout))
        if message["type"] == kind:
            return message
