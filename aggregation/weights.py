"""Between stored model versions and flat float32 vectors (no TensorFlow needed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import BinaryIO

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from disco_client.codec import TensorSpec, WeightsMessage, decode_weights
from tasks.models import ModelVersion
from tasks.tfjs_format import LayersModelArtifacts, parse_layers_model
from tasks.versions import read_file

from .frames import StoredFrames

SHARD = "group1-shard1of1.bin"


def version_vector(version: ModelVersion) -> np.ndarray:
    """All of a version's weights, in manifest order, as one float32 vector."""
    shards = [read_file(version, name) for name in version.file_names() if name != "model.json"]
    return np.frombuffer(b"".join(shards), dtype="<f4").copy()


@lru_cache(maxsize=2)
def _frozen_vector(version_pk: int, sha256: str) -> np.ndarray:
    vector = version_vector(ModelVersion.objects.get(pk=version_pk))
    vector.setflags(write=False)
    return vector


def cached_version_vector(version: ModelVersion) -> np.ndarray:
    """``version_vector``, read-only and kept for the next call (versions never change): the round's base."""
    return _frozen_vector(version.pk, version.sha256)


def artifacts_from_vector(base: ModelVersion, vector: np.ndarray) -> LayersModelArtifacts:
    """A new LayersModel: ``base``'s topology with ``vector`` as its weights, in one shard."""
    model_json = json.loads(read_file(base, "model.json"))
    model_json["weightsManifest"] = [{
        "paths": [SHARD],
        "weights": [{"name": s["name"], "shape": s["shape"], "dtype": "float32"} for s in base.weight_specs],
    }]
    data = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return parse_layers_model(json.dumps(model_json).encode(), {SHARD: data})


def load_frame(path: str, **checks) -> WeightsMessage:
    """Decode a stored weight frame; memory-mapped (no copy) when the storage is a local folder."""
    try:
        local = default_storage.path(path)
    except NotImplementedError:
        with default_storage.open(path, "rb") as fh:
            return decode_weights(fh.read(), **checks)
    return decode_weights(np.memmap(local, dtype=np.uint8, mode="r"), **checks)


def _open_stored(name: str) -> BinaryIO:
    """A stored file for reading: unbuffered from a local folder (reads land straight in numpy's buffer)."""
    try:
        local = default_storage.path(name)
    except NotImplementedError:
        return default_storage.open(name, "rb")
    return open(local, "rb", buffering=0)  # noqa: SIM115 - the caller closes it


def stored_frames(names: Sequence[str], expected: Sequence[TensorSpec] | None = None,
                  block_bytes: int | None = None) -> StoredFrames:
    """The stored update frames ``names`` as a source read by blocks of coordinates (``aggregation.frames``),
    each block at most ``block_bytes`` (default: the ``DISCO_AGGREGATION_BLOCK_BYTES`` setting)."""
    budget = settings.DISCO_AGGREGATION_BLOCK_BYTES if block_bytes is None else block_bytes
    return StoredFrames(names, _open_stored, expected=expected, block_bytes=budget)
