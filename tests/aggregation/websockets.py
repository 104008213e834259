"""In-process WebSocket helpers shared by the consumer tests."""

from __future__ import annotations

import json

from channels.testing import WebsocketCommunicator

from disco_site.asgi import application

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


async def connect(path: str, *, join: bool = True, resume: str = "", headers: list[tuple[bytes, bytes]] = (),
                  address: str | None = None) -> WebsocketCommunicator:
    """Connect to ``path`` (e.g. ``/ws/federated/fed/``) as a browser on this host would, and join.

    ``join=False`` only opens the socket (the test sends the first message itself); ``resume``
    is the resume token the join message carries; ``headers`` go with the handshake (e.g. a
    session cookie or ``X-Disco-Token``); ``address`` is the client's address.
    """
    communicator = WebsocketCommunicator(application, path,
                                         headers=[ORIGIN, (b"host", b"127.0.0.1"), *headers])
    if address is not None:
        communicator.scope["client"] = [address, 50000]
    connected, _ = await communicator.connect()
    assert connected
    if join:
        message = {"type": "join", **({"resumeToken": resume} if resume else {})}
        await communicator.send_to(text_data=json.dumps(message))
    return communicator


async def receive(communicator: WebsocketCommunicator, kind: str, timeout: float = 10) -> dict:
    """The next JSON message of type ``kind``, skipping others."""
    while True:
        message = json.loads(await communicator.receive_from(timeout))
        if message["type"] == kind:
            return message
