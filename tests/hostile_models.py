"""Hostile model files for the security tests: real payloads, built without ever running them.

Each "live" payload is a Python function marshalled into a place Keras deserializes, which
writes a marker file when the model is loaded by an unprotected Keras (``load_unprotected``
shows it does). Files are made from a benign model saved normally, then edited: the evil
function is serialized (``func_dump``), never called, so building them writes no marker.

    cases = build_hostile_files(tmp_path / "attack", marker)
    cases["h5_time_distributed"].files   # {"model.h5": b"..."}
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import model_files as mf


@dataclass(frozen=True)
class HostileFile:
    """An upload, the words its refusal must contain, and how an unprotected Keras would load it."""

    files: dict[str, bytes]
    expected: str
    kind: str  # the upload kind the converter would be given
    loader: str | None = None  # "tf_keras" or "keras3_unsafe": the payload runs when loaded so; None: static only


def _evil_function(marker: Path) -> Callable[[Any], Any]:
    """The attacker's code: a lambda (Keras 3 serializes only lambdas as code) that writes ``marker``.

    The path is a constant of the code itself: no defaults or closure, which JSON would turn into lists.
    """
    source = f"lambda x: (open({str(marker)!r}, 'a').write('the model ran code\\n'), x)[1]"
    return eval(source)  # noqa: S307 - building the attacker's payload, never calling it


def _keras2_dump(marker: Path) -> list[Any]:
    from disco_client.keras_env import tf_keras

    tf_keras()
    from tf_keras.src.utils.generic_utils import func_dump

    return list(func_dump(_evil_function(marker)))


def _replace_lambdas(document: Any, replace: Callable[[dict[str, Any]], None]) -> int:
    """Apply ``replace`` to the config of every Lambda in ``document``; how many there were."""
    count = 0
    if isinstance(document, dict):
        if document.get("class_name") == "Lambda" and isinstance(document.get("config"), dict):
            replace(document["config"])
            count += 1
        for value in document.values():
            count += _replace_lambdas(value, replace)
    elif isinstance(document, list):
        for value in document:
            count += _replace_lambdas(value, replace)
    return count


def _benign_nested_lambda_model(depth3: bool) -> Any:
    """Input (3, 4) -> TimeDistributed(Lambda(identity)) -> Flatten -> Dense(2); optionally nested two models deep."""
    from disco_client.keras_env import tf_keras

    keras = tf_keras()
    inner = keras.Sequential([keras.Input(shape=(3, 4)),
                              keras.layers.TimeDistributed(keras.layers.Lambda(lambda x: x, name="innocent")),
                              keras.layers.Flatten()], name="inner")
    if depth3:
        outer_input = keras.Input(shape=(3, 4))
        middle = keras.Sequential([keras.Input(shape=(3, 4)), inner], name="middle")
        model = keras.Model(outer_input, keras.layers.Dense(2, activation="softmax")(middle(outer_input)))
    else:
        model = keras.Sequential([keras.Input(shape=(3, 4)), inner, keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _edit_h5(data: bytes, edit: Callable[[dict[str, Any]], None], attribute: str = "model_config") -> bytes:
    import h5py

    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as h5:
        config = json.loads(h5.attrs[attribute])
        edit(config)
        h5.attrs[attribute] = json.dumps(config)
    return buffer.getvalue()


def _h5_with_evil_lambda(marker: Path, directory: Path, depth3: bool) -> bytes:
    dump = _keras2_dump(marker)
    data = mf.save_keras2(_benign_nested_lambda_model(depth3), "h5", directory)["model.h5"]

    def edit(config: dict[str, Any]) -> None:
        assert _replace_lambdas(config, lambda c: c.update(function=dump, function_type="lambda")) == 1

    return _edit_h5(data, edit)


def _saved_model_with_evil_lambda(marker: Path, directory: Path) -> bytes:
    from disco_client.keras_env import tf_keras

    tf_keras()
    from tf_keras.protobuf import saved_metadata_pb2

    dump = _keras2_dump(marker)
    zipped = mf.save_keras2(_benign_nested_lambda_model(False), "saved_model", directory)["my_saved_model.zip"]
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = next(n for n in members if n.endswith("keras_metadata.pb"))
    proto = saved_metadata_pb2.SavedMetadata()
    proto.ParseFromString(members[name])
    replaced = 0
    for node in proto.nodes:
        metadata = json.loads(node.metadata)
        replaced += _replace_lambdas(metadata, lambda c: c.update(function=dump, function_type="lambda"))
        if metadata.get("class_name") == "Lambda":  # a layer's own node: its config is at the top
            metadata["config"].update(function=dump, function_type="lambda")
            replaced += 1
        node.metadata = json.dumps(metadata)
    assert replaced >= 1
    members[name] = proto.SerializeToString()
    return mf.zip_bytes(members)


def _keras3_with_evil_lambda(marker: Path, directory: Path) -> bytes:
    from tests.model_files import _keras3

    keras = _keras3()
    from keras.src.utils import python_utils

    model = keras.Sequential([keras.Input(shape=(3, 4)),
                              keras.layers.TimeDistributed(keras.layers.Lambda(lambda x: x, name="innocent")),
                              keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    data = mf.save_keras3(model, "keras", directory)["model3.keras"]
    code, defaults, closure = python_utils.func_dump(_evil_function(marker))
    evil = {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": closure}}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    assert _replace_lambdas(config, lambda c: c.update(function=copy.deepcopy(evil))) == 1
    members["config.json"] = json.dumps(config).encode()
    return mf.zip_bytes(members)


def _static_cases(directory: Path) -> dict[str, HostileFile]:
    """Payload shapes refused by name (no marker: an attacker cannot ship the module they name)."""
    dense_h5 = mf.save_keras2(mf.keras2_model("dense"), "h5", directory / "dense")["model.h5"]
    dense_k3 = mf.save_keras3(mf.keras3_model("dense"), "keras", directory / "dense3")["model3.keras"]

    def custom_class(config: dict[str, Any]) -> None:
        config["config"]["layers"][1]["class_name"] = "EvilLayer"

    def wrapper_fn(config: dict[str, Any]) -> None:
        dense = config["config"]["layers"][1]
        dense["config"]["kernel_constraint"] = {"class_name": "MaxNorm", "config": {
            "max_value": 2, "inner": {"class_name": "ResidualWrapper", "config": {
                "residual_fn": ["4wAAAAAAAAAAAAAAAAEAAAAD", None, None], "residual_fn_type": "lambda"}}}}

    def custom_loss(training: dict[str, Any]) -> None:
        training["loss"] = {"class_name": "Custom>EvilLoss", "config": {"name": "evil"}}

    with zipfile.ZipFile(io.BytesIO(dense_k3)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][0]["config"]["activation"] = {
        "module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
    foreign_module = mf.zip_bytes({**members, "config.json": json.dumps(config).encode()})

    tfjs = mf.tfjs_files(_benign_nested_lambda_model(False))
    document = json.loads(tfjs["model.json"])
    _replace_lambdas(document, lambda c: c.update(function=["4wAAAAAAAAAA", None, None], function_type="lambda"))
    return {
        "h5_custom_class": HostileFile({"model.h5": _edit_h5(dense_h5, custom_class)}, "EvilLayer", "keras_h5"),
        "h5_wrapper_fn_in_a_constraint": HostileFile({"model.h5": _edit_h5(dense_h5, wrapper_fn)},
                                                      "'residual_fn'", "keras_h5"),
        "h5_custom_loss": HostileFile({"model.h5": _edit_h5(dense_h5, custom_loss, "training_config")},
                                      "Custom>EvilLoss", "keras_h5"),
        "keras3_foreign_module": HostileFile({"model3.keras": foreign_module}, "the Python module 'os'",
                                             "keras_v3"),
        "tfjs_nested_lambda": HostileFile({**tfjs, "model.json": json.dumps(document).encode()},
                                          "Lambda (layer 'innocent'", "tfjs_architecture"),
    }


def build_hostile_files(directory: Path, marker: Path) -> dict[str, HostileFile]:
    """Every hostile upload of the suite, keyed by a name saying what it hides and where."""
    directory.mkdir(parents=True, exist_ok=True)
    cases = {
        "h5_lambda_in_time_distributed": HostileFile(
            {"model.h5": _h5_with_evil_lambda(marker, directory / "a", depth3=False)},
            "Lambda (layer 'innocent'", "keras_h5", "tf_keras"),
        "h5_lambda_three_models_deep": HostileFile(
            {"model.h5": _h5_with_evil_lambda(marker, directory / "b", depth3=True)},
            "Lambda (layer 'innocent'", "keras_h5", "tf_keras"),
        "saved_model_lambda_in_metadata": HostileFile(
            {"my_saved_model.zip": _saved_model_with_evil_lambda(marker, directory / "c")},
            "Lambda (layer 'innocent'", "saved_model", "tf_keras"),
        "keras3_lambda_in_time_distributed": HostileFile(
            {"model3.keras": _keras3_with_evil_lambda(marker, directory / "d")},
            "Lambda (layer 'innocent'", "keras_v3", "keras3_unsafe"),
        **_static_cases(directory / "static"),
    }
    assert not marker.exists(), "building the hostile files must not run their payload"
    return cases


_UNPROTECTED_LOADERS = {
    "tf_keras": """
        import os, sys, zipfile, tempfile
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras
        path = sys.argv[1]
        if path.endswith(".zip"):
            folder = tempfile.mkdtemp()
            zipfile.ZipFile(path).extractall(folder)
            path = os.path.join(folder, "my_saved_model")
        try:
            tf_keras.models.load_model(path)
        except Exception as exc:
            print("load failed after the payload ran:", type(exc).__name__)
    """,
    "keras3_unsafe": """
        import os, sys
        import keras
        try:
            keras.saving.load_model(sys.argv[1], safe_mode=False)
        except Exception as exc:
            print("load failed after the payload ran:", type(exc).__name__)
    """,
}


def load_unprotected(case: HostileFile, workdir: Path) -> subprocess.CompletedProcess:
    """Load ``case`` the way a careless server would (plain Keras, no checks), in a separate process."""
    assert case.loader is not None
    workdir.mkdir(parents=True, exist_ok=True)
    name, data = next(iter(case.files.items()))
    path = workdir / name
    path.write_bytes(data)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(_UNPROTECTED_LOADERS[case.loader]), str(path)],
                          capture_output=True, text=True, timeout=300)
