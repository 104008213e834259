"""Disco's Python client: join a Disco server's federated or decentralized task from a script.

Depends on numpy and websockets only; the decentralized peer (``disco_client.peer``) also needs
``cryptography`` for its end-to-end encryption (``disco_client.peer_crypto``), and the optional
TensorFlow layer (``disco_client.keras``) ``tf_keras`` and ``tensorflowjs``. Nothing here imports
the server (Django, ``aggregation``, ``tasks``); the server imports the pure modules it shares with
the client from here: the wire codec, relay framing, update parts, secure-aggregation arithmetic,
privacy, peer encryption, the training-configuration rules, the model allow-list, the tokenizer.

Modules:

- ``codec``: weight messages (twin of ``static/disco/codec.js``); ``parts``: large updates in parts;
- ``remote``: the task's HTTP API, the WebSocket, recovery (``Recovery``, ``wait_limits``);
- ``participant``: ``FederatedClient``; ``peer``: ``DecentralizedClient`` (relay, agreement, secure
  aggregation); ``relay``, ``secure``, ``privacy``, ``peer_crypto``: their pure twins of the JS;
- ``trainer``: the ``Trainer`` protocol the clients train through, and ``DenseTrainer`` (numpy);
- ``local_data``: CSV / image folder / text / .npz data shaped for a task, and partitions;
- ``keras``: ``KerasFederatedClient``, ``KerasDecentralizedClient``, ``KerasTrainer`` (TensorFlow).

Without TensorFlow::

    import asyncio
    from disco_client import DenseTrainer, FederatedClient

    trainer = DenseTrainer(x, y)  # any object with samples, get/set_weights, train, evaluate, validate
    results = asyncio.run(FederatedClient("http://127.0.0.1:8000", "my-task").run(trainer, rounds=3))

The names below are imported on first use, so ``import disco_client.codec`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CodecError": "codec", "ENCODINGS": "codec", "decode_weights": "codec", "encode_weights": "codec",
    "PART_BYTES": "parts", "send_update": "parts",
    "ParticipantError": "remote", "Recovery": "remote", "TaskServerClient": "remote", "wait_limits": "remote",
    "FederatedClient": "participant", "RoundResult": "participant",
    "DecentralizedClient": "peer", "PeerRoundResult": "peer",
    "DenseTrainer": "trainer", "Trainer": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'disco_client' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
