"""Import TensorFlow's Keras 2 (``tf_keras``) the one way the converter and TF.js agree on.

TF.js reads Keras-2-style layer configs, so models are built and loaded with
``tf_keras`` and ``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is first imported.
Only workers, management commands, tests and the client's TensorFlow layer (``disco_client.keras``)
call this: never a web request. Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from types import ModuleType


def tf_keras() -> ModuleType:
    """The ``tf_keras`` module, with the environment TensorFlow needs set first."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports IPython
    # whenever stdout is not a terminal (workers, tests): silence it.
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    import tf_keras as keras

    return keras


def tensorflowjs() -> ModuleType:
    """The ``tensorflowjs`` package (its converters load a TF.js model.json into ``tf_keras``)."""
    tf_keras()  # sets TF_USE_LEGACY_KERAS before TensorFlow loads
    import tensorflowjs as tfjs

    return tfjs


def safe_mode() -> AbstractContextManager:
    """tf_keras's safe-mode scope: a Python lambda met while deserializing raises instead of loading.

    ``load_model(safe_mode=True)`` applies it to the ``.keras`` format only; legacy ``.h5``
    files, SavedModels and TF.js ``model.json`` are deserialized outside it unless wrapped.
    """
    tf_keras()
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(True)
