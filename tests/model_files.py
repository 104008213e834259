"""Real model files for tests: Keras 2 (tf_keras) and Keras 3 models saved in every upload format.

TensorFlow and Keras are imported inside the helpers, so importing this module is free.
Build models once per test module (module-scoped fixtures): a TensorFlow import and a
save take seconds on the CI machine.

    model = keras3_model("conv")
    files = save_keras3(model, "keras", tmp_path)      # {"model.keras": b"..."}
    inspect_model_upload(files)
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("dense", "conv", "multi_input", "lambda")
# Input shapes of each kind, as lists of per-sample shapes (one per model input).
INPUT_SHAPES: dict[str, list[tuple[int, ...]]] = {
    "dense": [(4,)],
    "conv": [(8, 8, 3)],
    "multi_input": [(4,), (3,)],
    "lambda": [(4,)],
}


def _keras2() -> Any:
    from disco_client.keras_env import tf_keras

    return tf_keras()


def _keras3() -> Any:
    _keras2()  # TensorFlow's environment first
    import keras

    return keras


def _build(keras: Any, kind: str, seed: int) -> Any:
    """The same architectures in either Keras; their layer names stay the Keras defaults."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    if kind == "dense":
        model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(6, activation="relu"),
                                  layers.Dropout(0.1), layers.Dense(3, activation="softmax")])
    elif kind == "conv":
        model = keras.Sequential([
            keras.Input(shape=(8, 8, 3)),
            layers.Conv2D(4, 3, activation="relu", padding="same"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(2),
            layers.Conv2D(5, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(2),
            layers.Activation("softmax"),
        ])
    elif kind == "multi_input":
        a = keras.Input(shape=(4,), name="numbers")
        b = keras.Input(shape=(3,), name="flags")
        hidden = layers.Dense(5, activation="tanh")(a)
        joined = layers.Concatenate()([hidden, b])
        joined = layers.BatchNormalization()(joined)
        out = layers.Dense(2, activation="softmax")(layers.Add()([layers.Dense(8)(joined), layers.Dense(8)(joined)]))
        model = keras.Model([a, b], out)
    elif kind == "lambda":
        model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3),
                                  layers.Lambda(lambda x: x * 2.0, name="doubling"),
                                  layers.Dense(2, activation="softmax")])
    else:  # pragma: no cover - programming error in a test
        raise ValueError(f"Unknown model kind {kind!r}; use one of {KINDS}.")
    if kind == "conv" or kind == "multi_input":
        _perturb_batchnorm(model)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _perturb_batchnorm(model: Any) -> None:
    """Give BatchNormalization non-trivial statistics, so a wrong weight order shows in predictions."""
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma + rng.uniform(0.1, 0.5, gamma.shape).astype("float32"),
                               beta + rng.normal(0, 0.3, beta.shape).astype("float32"),
                               rng.normal(0, 0.5, mean.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, var.shape).astype("float32")])


def keras2_model(kind: str = "dense", seed: int = 0) -> Any:
    """A small compiled tf_keras (Keras 2) model: "dense", "conv", "multi_input" or "lambda"."""
    return _build(_keras2(), kind, seed)


def keras3_model(kind: str = "dense", seed: int = 0) -> Any:
    """The same architectures built with Keras 3."""
    return _build(_keras3(), kind, seed)


def sample_inputs(kind: str, batch: int = 3, seed: int = 1) -> list[np.ndarray]:
    """Fixed inputs for ``kind``'s model (a list: one array per model input)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (batch, *shape)).astype("float32") for shape in INPUT_SHAPES[kind]]


def _read_dir_as_zip(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(directory.parent)))
    return buffer.getvalue()


def save_keras2(model: Any, fmt: str, directory: Path) -> dict[str, bytes]:
    """Save a tf_keras model as "h5", "keras" or "saved_model" (zipped); returns {upload name: bytes}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "h5":
        path = directory / "model.h5"
        model.save(path, save_format="h5")
        return {"model.h5": path.read_bytes()}
    if fmt == "keras":
        path = directory / "model.keras"
        model.save(path)
        return {"model.keras": path.read_bytes()}
    if fmt == "saved_model":
        path = directory / "my_saved_model"
        model.save(path, save_format="tf")
        return {"my_saved_model.zip": _read_dir_as_zip(path)}
    raise ValueError(f"Unknown format {fmt!r}: h5, keras or saved_model.")


def save_keras3(model: Any, fmt: str, directory: Path) -> dict[str, bytes]:
    """Save a Keras 3 model as "h5", "keras" or "export" (an inference-only SavedModel, zipped)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "h5":
        path = directory / "model3.h5"
        model.save(path)
        return {"model3.h5": path.read_bytes()}
    if fmt == "keras":
        path = directory / "model3.keras"
        model.save(path)
        return {"model3.keras": path.read_bytes()}
    if fmt == "export":
        path = directory / "exported"
        with open(os.devnull, "w") as devnull:
            from contextlib import redirect_stdout

            with redirect_stdout(devnull):
                model.export(str(path))
        return {"exported.zip": _read_dir_as_zip(path)}
    raise ValueError(f"Unknown format {fmt!r}: h5, keras or export.")


def tfjs_files(model: Any) -> dict[str, bytes]:
    """The converter's TF.js output for a tf_keras model: {"model.json": ..., "group1-shard1of1.bin": ...}."""
    from tasks.conversion import keras_model_to_tfjs

    artifacts = keras_model_to_tfjs(model)
    return {"model.json": artifacts.model_json_bytes(), **artifacts.shards}


def zip_bytes(files: Mapping[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of ``files`` (member name -> bytes), names taken as given (even unsafe ones)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
