"""Reading a SavedModel's ``keras_metadata.pb`` without TensorFlow.

The file is a ``SavedMetadata`` protocol buffer: ``repeated SavedObject nodes = 1``, each
with ``identifier = 4`` (e.g. ``_tf_keras_layer``) and ``metadata = 5``, the JSON that
``tf_keras`` rebuilds the object from (its ``class_name`` and full ``config``). Reading the
wire format by hand (varints and length-delimited fields, nothing else) lets the web process
check every node's config with the allow-list before the file goes anywhere near Keras.
"""

from __future__ import annotations

import json
from typing import Any

from disco_client.model_allowlist import config_problems

from .errors import UploadError

_DAMAGED = "The SavedModel's keras_metadata.pb is damaged: save the model again with model.save(...)."


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise UploadError([_DAMAGED])
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of one message: ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise UploadError([_DAMAGED])
            out.append((number, data[pos:pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise UploadError([_DAMAGED])
    return out


def metadata_nodes(data: bytes) -> list[tuple[str, Any]]:
    """(identifier, parsed metadata JSON) of every node of a ``keras_metadata.pb``."""
    nodes = []
    for number, node in _fields(data):
        if number != 1 or not isinstance(node, bytes):
            continue
        fields = dict(_fields(node))
        identifier, metadata = fields.get(4, b""), fields.get(5, b"")
        if not isinstance(identifier, bytes) or not isinstance(metadata, bytes):
            raise UploadError([_DAMAGED])
        try:
            parsed = json.loads(metadata) if metadata else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise UploadError([_DAMAGED]) from None
        nodes.append((identifier.decode("utf-8", "replace"), parsed))
    return nodes


def saved_model_problems(keras_metadata: bytes) -> list[str]:
    """``config_problems`` over every node of a SavedModel's Keras metadata (layers, model, metrics...)."""
    return config_problems({f"node {index} ({identifier})": metadata
                            for index, (identifier, metadata) in enumerate(metadata_nodes(keras_metadata))})
