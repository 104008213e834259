"""Keras -> TF.js LayersModel conversion with ``tensorflowjs``.

Heavy imports (TensorFlow, tensorflowjs) happen on first use, in a worker or a
management command, once per process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from disco_client.keras_env import safe_mode, tensorflowjs

from .tfjs_format import LayersModelArtifacts, read_layers_model_dir


def _tensorflowjs() -> Any:
    return tensorflowjs()


def keras_model_to_tfjs(model: Any) -> LayersModelArtifacts:
    """Convert a built ``tf_keras`` model to validated TF.js LayersModel artifacts."""
    converters = _tensorflowjs().converters
    with tempfile.TemporaryDirectory(prefix="disco-convert-") as tmp:
        converters.save_keras_model(model, tmp)
        return read_layers_model_dir(Path(tmp))


def tfjs_files_to_artifacts(model_json: Path) -> LayersModelArtifacts:
    """Read an existing TF.js LayersModel from disk.

    With its weight shards present it is taken as it is; with none (an architecture-only
    ``model.json``) the model is rebuilt in Keras with random initial weights and
    converted back, so the served version always carries weights.
    """
    model_json = Path(model_json)
    spec = LayersModelArtifacts.peek_manifest(model_json.read_bytes())
    shard_paths = [model_json.parent / p for p in spec]
    if spec and all(p.is_file() for p in shard_paths):
        return read_layers_model_dir(model_json.parent, model_json.name)
    if spec and any(p.is_file() for p in shard_paths):
        missing = [p.name for p in shard_paths if not p.is_file()]
        raise FileNotFoundError(f"{model_json}: weight shards missing: {', '.join(missing)}.")
    converters = _tensorflowjs().converters
    with safe_mode():
        model = converters.load_keras_model(str(model_json), load_weights=False)
    return keras_model_to_tfjs(model)
