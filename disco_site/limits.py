"""Size limits that processes other than Django need too (daphne's command line, test and bench launchers).

Importable without Django: ``python -c 'from disco_site.limits import ws_max_message_bytes; ...'``.

WebSocket messages are kept small because daphne (autobahn) assembles every message in
memory, with no backpressure, before the application sees it. Updates travel in parts of
at most ``WS_PART_BYTES`` (``disco_client.parts.send_update``, ``sendUpdate`` in
``static/disco/federated.js``), so daphne's limit need only be a part plus room for a
header: ``DISCO_WS_MAX_MESSAGE_BYTES``, 1 MiB + 64 KiB by default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from disco_client.parts import PART_BYTES as WS_PART_BYTES

WS_HEADER_SLACK = 64 * 1024
WS_MIN_MESSAGE_BYTES = WS_PART_BYTES + 4096


def ws_max_message_bytes(environ: Mapping[str, str] | None = None) -> int:
    """``DISCO_WS_MAX_MESSAGE_BYTES`` from ``environ`` (default: this process's), checked."""
    environ = os.environ if environ is None else environ
    raw = environ.get("DISCO_WS_MAX_MESSAGE_BYTES") or str(WS_PART_BYTES + WS_HEADER_SLACK)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"DISCO_WS_MAX_MESSAGE_BYTES must be a number of bytes (got {raw!r}).") from None
    if value < WS_MIN_MESSAGE_BYTES:
        raise ValueError(f"DISCO_WS_MAX_MESSAGE_BYTES is {value:,}; it must be at least {WS_MIN_MESSAGE_BYTES:,} "
                         f"bytes, one update part of {WS_PART_BYTES:,} bytes plus its frame header.")
    return value


def daphne_ws_args(environ: Mapping[str, str] | None = None) -> list[str]:
    """daphne's WebSocket size options for the limit ``environ`` sets."""
    size = str(ws_max_message_bytes(environ))
    return ["--websocket-max-message-size", size, "--websocket-max-frame-size", size]


if __name__ == "__main__":  # the Makefile: `python -m disco_site.limits` prints daphne's options
    print(" ".join(daphne_ws_args()))
