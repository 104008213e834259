"""Turning an uploaded Keras model (Keras 2 or Keras 3) into a TF.js LayersModel, in a worker.

Keras 2 (``tf_keras``) files load with ``tf_keras`` and convert with ``tensorflowjs``
directly. Keras 3 files do not: tensorflowjs 4.22 writes Keras 3's layer configs as they
are (``batch_shape``, dtype-policy objects, ``{"args": [...]}`` inbound nodes, ...), which
TF.js 4.22 refuses to load. So a Keras 3 model is loaded with Keras 3, its config is
translated to the Keras 2 form, rebuilt with ``tf_keras``, given the Keras 3 weights
(checked one by one for shape) and converted from there.

Uploaded configs are checked for layer classes TF.js cannot train *before* anything is
deserialized, and Keras 3 loads in safe mode, so an upload never runs Python code it
carries (Lambda layers hold marshalled bytecode).

TensorFlow is imported on first use: only workers, management commands and tests call this.
"""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from disco_client.keras_env import safe_mode, tf_keras
from disco_client.model_allowlist import config_problems
from disco_client.training_config import LOSSES, TrainingSettings, compile_arguments, optimizer_settings

from .conversion import keras_model_to_tfjs, tfjs_files_to_artifacts
from .model_files.archives import DEFAULT_MAX_BYTES, SafeZip
from .model_files.errors import UploadError
from .model_files.hdf5 import h5_keras_info
from .model_files.saved_model import saved_model_problems
from .tfjs_format import LayersModelArtifacts, ModelFormatError

log = logging.getLogger(__name__)

SOURCE_KINDS = ("keras_h5", "keras_v3", "saved_model", "tfjs_architecture")

# Keyword arguments tf_keras's base Layer takes besides those of each class's __init__.
_BASE_LAYER_KWARGS = frozenset({"name", "dtype", "trainable", "dynamic", "input_dim", "input_shape",
                                "batch_input_shape", "batch_size", "weights", "activity_regularizer", "autocast"})
_MODEL_CONFIG_KEYS = ("name", "layers", "input_layers", "output_layers")
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def convert_keras_source(kind: str, name: str, data: bytes, *,
                         max_bytes: int = DEFAULT_MAX_BYTES) -> LayersModelArtifacts:
    """Convert an uploaded model (``kind`` from ``uploads.inspect_model_upload``) to checked TF.js artifacts.

    Raises ``UploadError`` with plain-words reasons when the file cannot become a
    trainable TF.js model. ``max_bytes`` bounds what an archive may unpack to.
    """
    if kind not in SOURCE_KINDS:
        raise UploadError([f"Unknown upload kind {kind!r}: expected one of {', '.join(SOURCE_KINDS)}."])
    with tempfile.TemporaryDirectory(prefix="disco-upload-") as tmp:
        workdir = Path(tmp)
        try:
            if kind == "tfjs_architecture":
                artifacts = _architecture_to_artifacts(data, workdir)
            else:
                loader = {"keras_h5": _load_h5, "keras_v3": _load_keras_v3, "saved_model": _load_saved_model}[kind]
                artifacts = keras_model_to_tfjs(loader(data, workdir, max_bytes))
        except UploadError:
            raise
        except ModelFormatError as exc:
            raise UploadError(["The converted model is not a usable TF.js layers model: "
                               + " ".join(exc.problems)]) from None
        except Exception as exc:
            log.exception("Converting an uploaded %s (%s) failed", kind, name)
            raise UploadError([f"The model could not be converted ({type(exc).__name__}: {_short(exc)}). "
                               "Check that it loads with keras.models.load_model, then save it again."]) from None
    problems = config_problems(artifacts.model_json)
    if problems:
        raise UploadError(problems)
    return artifacts


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _major(version: str) -> str:
    return str(version).strip().split(".")[0]


def import_conversion_libraries() -> None:
    """Import everything a conversion uses, so that the isolated process can then be confined."""
    from .conversion import _tensorflowjs

    _tensorflowjs()
    _keras3()
    import h5py  # noqa: F401
    from tensorflow.core.protobuf import saved_model_pb2  # noqa: F401
    from tf_keras.src.saving.legacy.saved_model import load as _saved_model_load  # noqa: F401


def model_shapes(model_json: Path) -> tuple[list[list[int | None]], list[list[int | None]]]:
    """(input shapes, output shapes) of a TF.js LayersModel as Keras computes them, batch dimension included."""
    from .conversion import _tensorflowjs

    with safe_mode():
        model = _tensorflowjs().converters.load_keras_model(str(model_json), load_weights=False)
    return ([[None if d is None else int(d) for d in t.shape] for t in model.inputs],
            [[None if d is None else int(d) for d in t.shape] for t in model.outputs])


# --- Loaders, one per kind ---------------------------------------------------------------------------------------

def _architecture_to_artifacts(data: bytes, workdir: Path) -> LayersModelArtifacts:
    """Random initial weights, drawn once on the server so every participant starts from the same model."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            raise ValueError("not an object")
    except (ValueError, RecursionError):
        raise UploadError(["model.json is not valid JSON: upload the file again."]) from None
    problems = config_problems(document)
    if problems:
        raise UploadError(problems)
    path = workdir / "model.json"
    # Without a manifest the converter builds the model and draws fresh weights.
    document.pop("weightsManifest", None)
    path.write_text(json.dumps(document))
    return tfjs_files_to_artifacts(path)


def _load_h5(data: bytes, workdir: Path, max_bytes: int) -> Any:
    version, config, training_config = h5_keras_info(data)
    problems = config_problems({"model_config": config, "training_config": training_config})
    if problems:
        raise UploadError(problems)
    path = workdir / "model.h5"
    path.write_bytes(data)
    if version == "3":
        keras3 = _keras3()
        try:
            model = _load_keras3_compiled(lambda compile: keras3.models.load_model(str(path), compile=compile))
        except Exception as exc:
            raise UploadError([f"This Keras 3 .h5 file could not be loaded ({_short(exc)}). Save the model again "
                               "with model.save('model.keras') and upload that."]) from None
        return keras3_to_tf_keras(model)
    return _load_tf_keras(path)


def _load_keras_v3(data: bytes, workdir: Path, max_bytes: int) -> Any:
    archive = SafeZip(data, "The .keras file", limit=max_bytes)
    try:
        config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, UnicodeDecodeError):
        raise UploadError(["This .keras file is damaged: its config.json is not a Keras model configuration. "
                           "Save the model again with model.save('model.keras') and upload that file."]) from None
    problems = config_problems(config)
    if problems:
        raise UploadError(problems)
    version = ""
    if "metadata.json" in archive.names():
        try:
            version = _major(json.loads(archive.read("metadata.json")).get("keras_version", ""))
        except (ValueError, UnicodeDecodeError, AttributeError):
            version = ""
    # Re-pack the members through SafeZip's bounded reads, so Keras never inflates an unchecked stream.
    path = workdir / "model.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as out:
        for member in archive.names():
            out.writestr(member, archive.read(member))
    if version == "2":
        return _load_tf_keras(path)
    keras3 = _keras3()
    try:
        model = _load_keras3_compiled(
            lambda compile: keras3.saving.load_model(str(path), compile=compile, safe_mode=True))
    except Exception as exc:
        raise UploadError([f"This .keras file could not be loaded by Keras {version or '3'} ({_short(exc)}). "
                           "Save the model again with model.save('model.keras') and upload that file."]) from None
    return keras3_to_tf_keras(model)


def _load_saved_model(data: bytes, workdir: Path, max_bytes: int) -> Any:
    archive = SafeZip(data, "The SavedModel zip", limit=max_bytes)
    saved = [n for n in archive.names() if PurePosixPath(n).name == "saved_model.pb"]
    if len(saved) != 1:
        raise UploadError(["The zip must hold exactly one TensorFlow SavedModel folder (with saved_model.pb)."])
    root = workdir / "saved_model"
    archive.extract_to(root)
    model_dir = (root / saved[0]).parent
    metadata = model_dir / "keras_metadata.pb"
    if not metadata.is_file():
        raise UploadError([
            "This SavedModel has no Keras metadata (keras_metadata.pb): it was exported for inference only "
            "(for example with Keras 3's model.export()), and its layers cannot be rebuilt for training. "
            "Upload the Keras file instead: model.save('model.keras') (or 'model.h5')."
        ])
    problems = saved_model_problems(metadata.read_bytes()) or _saved_model_op_problems(model_dir / "saved_model.pb")
    if problems:
        raise UploadError(problems)
    return _load_tf_keras(model_dir)


# TensorFlow operations that reach outside the graph: files, Python. A Keras model's own functions
# (call, save, restore) never need them; a SavedModel that holds them was made to run them.
_FORBIDDEN_OPS = frozenset({"WriteFile", "ReadFile", "MatchingFiles", "DeleteFile", "PyFunc", "PyFuncStateless",
                            "EagerPyFunc", "DebugIdentityV2", "DebugIdentityV3", "PrintV2", "WriteAudioSummary",
                            "WriteGraphSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteRawProtoSummary",
                            "WriteScalarSummary", "WriteSummary", "CreateSummaryFileWriter", "ImmutableConst"})


def _saved_model_op_problems(saved_model_pb: Path) -> list[str]:
    """Operations of the SavedModel's graphs and functions that read or write files or call Python."""
    tf_keras()
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(saved_model_pb.read_bytes())
    except Exception:  # protobuf raises its own DecodeError
        raise UploadError(["The SavedModel's saved_model.pb is damaged: save the model again."]) from None
    found: set[str] = set()
    for meta_graph in proto.meta_graphs:
        found |= {node.op for node in meta_graph.graph_def.node} & _FORBIDDEN_OPS
        for function in meta_graph.graph_def.library.function:
            found |= {node.op for node in function.node_def} & _FORBIDDEN_OPS
    if not found:
        return []
    return [f"The SavedModel's graph holds operations that read or write files or call Python "
            f"({', '.join(sorted(found))}); a Keras model needs none of them, so it is refused. Upload the model "
            "saved with model.save('model.keras') instead."]


def _load_tf_keras(path: Path) -> Any:
    keras = tf_keras()
    try:
        with safe_mode():
            try:
                return keras.models.load_model(str(path), safe_mode=True)  # keeps the training config if any
            except (ValueError, TypeError, KeyError):
                return keras.models.load_model(str(path), compile=False, safe_mode=True)
    except UploadError:
        raise
    except Exception as exc:
        raise UploadError([f"This file is not a Keras model tf_keras can load ({_short(exc)}). Save the model "
                           "again with model.save(...) and upload that file."]) from None


def _load_keras3_compiled(load: Any) -> Any:
    """``load(compile=True)``, so the author's optimizer and loss come along; without them if they cannot
    be restored (a custom loss, say): the browser then compiles with defaults for the task."""
    try:
        return load(True)
    except Exception as exc:  # Keras raises many kinds here; the architecture may still load
        log.info("Loading the Keras 3 model without its training configuration: %s", _short(exc))
        return load(False)


def _keras3() -> Any:
    tf_keras()  # TensorFlow's environment first
    import keras

    if _major(keras.__version__) != "3":  # pragma: no cover - depends on the installed packages
        raise UploadError(["This server cannot read Keras 3 files (Keras 3 is not installed)."])
    return keras


# --- Keras 3 -> Keras 2 translation --------------------------------------------------------------------------------

def keras3_to_tf_keras(model: Any) -> Any:
    """Rebuild a Keras 3 Sequential/Functional ``model`` in ``tf_keras`` with the same weights."""
    keras3 = _keras3()
    serialized = keras3.saving.serialize_keras_object(model)
    class_name = serialized.get("class_name")
    if class_name not in _MODEL_CLASSES:
        raise UploadError([f"The model is a subclassed Keras model ({class_name}); only Sequential and functional "
                           "models can be converted to TF.js. Build it with keras.Sequential or keras.Model(inputs, "
                           "outputs)."])
    config = translate_model_config(model.get_config())
    keras = tf_keras()
    try:
        if class_name == "Sequential":
            rebuilt = keras.Sequential.from_config(config)
        else:
            rebuilt = keras.Model.from_config(config)
    except UploadError:
        raise
    except Exception as exc:
        raise UploadError([f"The Keras 3 model could not be rebuilt for TF.js ({type(exc).__name__}: {_short(exc)})."
                           " Rebuild it with standard Keras layers."]) from None
    _copy_weights(model, rebuilt)
    compiled = getattr(model, "compiled", False) and model.get_compile_config()
    settings = translate_compile_config(compiled) if compiled else None
    if settings:
        rebuilt.compile(**settings)
    return rebuilt


# The losses the training page can compile from model.json's training_config (static/disco/trainer.js).
BROWSER_LOSSES = frozenset(LOSSES)


def translate_compile_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """``tf_keras`` compile() arguments from a Keras 3 compile config, or ``None`` when the browser could not
    train with them (a custom or from-logits loss): the training page then uses its defaults.

    Keeps the loss, the optimizer (Adam, SGD or RMSprop; others become Adam) with its learning
    rate and SGD's momentum (``disco_client.training_config.optimizer_settings``, the page's rules), and
    accuracy when it was a metric: what TF.js compiles from.
    """
    loss = config.get("loss")
    if isinstance(loss, dict):  # a Loss object {"class_name", "config": {...}}, or a function {"config": "name"}
        loss_config = loss.get("config")
        if isinstance(loss_config, str):
            loss = loss_config
        elif isinstance(loss_config, dict) and not loss_config.get("from_logits"):
            loss = loss_config.get("name") or loss.get("class_name")
        else:
            return None
    if not isinstance(loss, str) or loss not in BROWSER_LOSSES:
        return None
    optimizer = config.get("optimizer") or config.get("optimizer_config") or "adam"
    if not isinstance(optimizer, dict):  # compile(optimizer="sgd")
        optimizer = {"class_name": str(optimizer)}
    class_name, rate, momentum = optimizer_settings(optimizer)
    metrics = [m for m in config.get("metrics") or [] if m in ("accuracy", "acc")]
    settings = TrainingSettings(class_name, rate, loss, momentum, tuple(metrics))
    return compile_arguments(settings)


def _copy_weights(source: Any, target: Any) -> None:
    weights = source.get_weights()
    expected = target.get_weights()
    problems = []
    if len(weights) != len(expected):
        problems.append(f"it has {len(weights)} weight arrays where the rebuilt model has {len(expected)}")
    else:
        for index, (have, want) in enumerate(zip(weights, expected, strict=True)):
            if tuple(have.shape) != tuple(want.shape):
                name = target.weights[index].name
                problems.append(f"weight {index} ({name}) has shape {tuple(have.shape)}, expected {tuple(want.shape)}")
    if problems:
        raise UploadError(["The Keras 3 model could not be rebuilt for TF.js with the same weights: "
                           + "; ".join(problems) + ". Rebuild it with standard Keras layers."])
    target.set_weights(weights)


def translate_model_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Keras 3 Sequential/Functional ``get_config()`` in the Keras 2 form tf_keras and TF.js read."""
    out: dict[str, Any] = {key: config[key] for key in _MODEL_CONFIG_KEYS if key in config}
    out["layers"] = [_translate_layer(layer) for layer in config.get("layers", [])]
    for key in ("input_layers", "output_layers"):
        if key in out:
            out[key] = _layer_refs(out[key])
    if "build_input_shape" in config:
        out["build_input_shape"] = config["build_input_shape"]
    return out


def _layer_refs(refs: Any) -> list[list[Any]]:
    """Keras 3 writes a single input/output as ``[name, node, index]``; Keras 2 always as a list of those."""
    if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
        return [list(refs)]
    if isinstance(refs, dict):
        raise UploadError(["The model takes its inputs as a dictionary, which TF.js cannot express: build it with "
                           "a list of inputs instead."])
    return [list(ref) for ref in refs]


def _translate_layer(entry: dict[str, Any]) -> dict[str, Any]:
    class_name = entry["class_name"]
    name = entry.get("name") or entry.get("config", {}).get("name")
    if class_name in _MODEL_CLASSES:
        config = translate_model_config(entry["config"])
    else:
        config = _translate_value(entry.get("config", {}))
        if "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        config = _accepted_kwargs(class_name, config, "layers")
    out: dict[str, Any] = {"class_name": class_name, "config": config}
    if name is not None:
        out["name"] = name
    if "inbound_nodes" in entry:
        out["inbound_nodes"] = [_translate_node(node, name) for node in entry["inbound_nodes"]]
    return out


def _translate_node(node: Any, layer_name: str | None) -> list[list[Any]]:
    if isinstance(node, list):  # already Keras 2 style
        return node
    tensors: list[list[Any]] = []
    _collect_tensors(node.get("args", []), tensors, layer_name)
    kwargs = {}
    for key, value in (node.get("kwargs") or {}).items():
        found: list[list[Any]] = []
        _collect_tensors(value, found, layer_name, allow_constants=True)
        if found:
            raise UploadError([f"Layer {layer_name!r} is called with a tensor as its {key!r} argument, which TF.js "
                               "cannot express. Pass tensors only as the layer's inputs."])
        if value is not None:
            kwargs[key] = value
    return [[history[0], history[1], history[2], kwargs] for history in tensors]


def _collect_tensors(value: Any, out: list[list[Any]], layer_name: str | None, allow_constants: bool = False) -> None:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        out.append(list(value["config"]["keras_history"]))
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_tensors(item, out, layer_name, allow_constants)
    elif not allow_constants:
        raise UploadError([f"Layer {layer_name!r} is called with a non-tensor argument ({value!r:.60}), which TF.js "
                           "cannot express. Rebuild the model so each layer is called on tensors only."])


def _translate_value(value: Any) -> Any:
    """Keras 3 serialized objects -> Keras 2 ``{class_name, config}``; dtype policies -> their name."""
    if isinstance(value, list):
        return [_translate_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "class_name" in value and "config" in value and ("module" in value or "registered_name" in value):
        class_name = value["class_name"]
        if class_name.endswith("DTypePolicy"):
            return value["config"].get("name", "float32")
        if class_name in _MODEL_CLASSES or "inbound_nodes" in value or "build_config" in value:
            return _translate_layer(value)
        config = _translate_value(value["config"])
        module = str(value.get("module") or "")
        family = next((f for f in ("initializers", "regularizers", "constraints") if f in module), "layers")
        if isinstance(config, dict):
            config = _accepted_kwargs(class_name, config, family)
        return {"class_name": class_name, "config": config}
    return {key: _translate_value(item) for key, item in value.items()}


def _accepted_kwargs(class_name: str, config: dict[str, Any], family: str) -> dict[str, Any]:
    """Drop Keras 3-only options (``quantization_config``, ``optional``, ...) that tf_keras's class does not take."""
    keras = tf_keras()
    cls = getattr(getattr(keras, family, None), class_name, None)
    if cls is None:
        return config
    accepted: set[str] = set()
    takes_any = False
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind is param.VAR_KEYWORD:
                takes_any = True
            else:
                accepted.add(param.name)
    if family == "layers":
        accepted |= _BASE_LAYER_KWARGS
    elif takes_any:
        return config
    dropped = {k: v for k, v in config.items() if k not in accepted}
    if any(v not in (None, False, {}, []) for v in dropped.values()):
        log.info("Dropped Keras 3 options of %s not known to Keras 2: %s", class_name, dropped)
    return {k: v for k, v in config.items() if k in accepted}


def source_keras_version(kind: str, data: bytes) -> str:
    """The Keras major version ("2", "3" or "") a stored upload records, for messages."""
    try:
        if kind == "keras_h5":
            return h5_keras_info(data)[0]
        if kind == "keras_v3":
            archive = SafeZip(data, "The .keras file", limit=DEFAULT_MAX_BYTES)
            return _major(json.loads(archive.read("metadata.json")).get("keras_version", ""))
        if kind == "saved_model":
            return "2"
    except (UploadError, KeyError, ValueError, AttributeError):
        pass
    return ""
