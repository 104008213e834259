"""Reading what Keras would deserialize from an HDF5 model file, without Keras."""

from __future__ import annotations

import io
import json
from typing import Any

from .errors import UploadError


def h5_keras_info(data: bytes) -> tuple[str, dict[str, Any], Any]:
    """(Keras major version, model config, training config or ``None``) from a Keras HDF5 file.

    ``UploadError`` if it is not one. These two attributes are all that Keras deserializes
    from the file (the rest are weight arrays), so they are what the allow-list must see.
    """
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            attrs = dict(h5.attrs)
    except (OSError, ValueError, KeyError) as exc:
        raise UploadError([f"This .h5 file is damaged or truncated ({exc}): save the model again and "
                           "re-upload the whole file."]) from None
    raw_config = attrs.get("model_config")
    if raw_config is None:
        hint = (" It holds only weights (saved with save_weights): save the whole model with model.save('model.h5')."
                if "layer_names" in attrs or "keras_version" in attrs else "")
        raise UploadError(["This HDF5 file is not a Keras model: it has no model configuration (model_config)."
                           + hint + " Upload a file made with model.save('model.h5') or model.save('model.keras')."])
    config = _json_attribute(raw_config, "model configuration")
    training = attrs.get("training_config")
    training_config = None if training is None else _json_attribute(training, "training configuration")
    version = attrs.get("keras_version", b"")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return str(version).split(".")[0], config, training_config


def _json_attribute(raw: Any, what: str) -> Any:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        return json.loads(str(raw))
    except (ValueError, RecursionError):
        raise UploadError([f"This .h5 file's {what} is not valid JSON: save the model again."]) from None
