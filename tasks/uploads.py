"""Inspecting an uploaded model before anything is stored.

``inspect_model_upload`` sniffs what the uploaded files really are (from their bytes,
never from their names), refuses unsafe archives and unusable models with reasons in
plain words, and tells the caller what to do next:

- a TF.js LayersModel (``kind == "tfjs"``) comes back as checked artifacts, ready for
  ``tasks.versions.create_version``;
- everything else (Keras ``.h5``/``.keras`` from Keras 2 or 3, a zipped SavedModel, an
  architecture-only ``model.json``) comes back as the bytes to store and convert in a
  Celery worker with ``tasks.keras_import.convert_keras_source``.

``check_model_fits_task`` compares a model's input and output shapes with a task's
fields. Nothing here imports TensorFlow: this module runs in web requests.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings

from .tfjs_format import LayersModelArtifacts, ModelFormatError, parse_layers_model

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
MAX_ZIP_MEMBERS = 1000
MAX_COMPRESSION_RATIO = 100
# Below this many uncompressed bytes the ratio is not checked: tiny files (HDF5 headers,
# JSON configs) compress very well and can do no harm.
RATIO_CHECK_FROM_BYTES = 1024 * 1024
_CHUNK = 1024 * 1024

ACCEPTED_FORMATS = (
    "Accepted model uploads: a TF.js layers model (model.json with its .bin weight files, or one .zip holding "
    "them); a Keras .h5 or .keras file (Keras 2 or Keras 3); or a zipped TensorFlow SavedModel folder of a Keras "
    "model."
)

# Layer classes TF.js 4.22 (tfjs-layers) can deserialize and train. A model using any other
# class (Lambda, TFOpLambda, custom layers, ...) cannot be loaded in the browser.
TFJS_LAYER_CLASSES = frozenset({
    "Activation", "Add", "AlphaDropout", "Average", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "AvgPool1D", "AvgPool2D", "AvgPool3D", "BatchNormalization", "Bidirectional", "CategoryEncoding", "CenterCrop",
    "Concatenate", "Conv1D", "Conv2D", "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "ConvLSTM2D",
    "ConvLSTM2DCell", "Cropping2D", "Dense", "DepthwiseConv2D", "Dot", "Dropout", "ELU", "Embedding", "Flatten",
    "Functional", "GaussianDropout", "GaussianNoise", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GRU", "GRUCell", "InputLayer", "LayerNormalization", "LeakyReLU", "LSTM", "LSTMCell",
    "Masking", "MaxPool1D", "MaxPool2D", "MaxPool3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "Maximum",
    "Minimum", "Model", "Multiply", "Permute", "PReLU", "RandomWidth", "ReLU", "RepeatVector", "Rescaling",
    "Reshape", "Resizing", "RNN", "SeparableConv2D", "Sequential", "SimpleRNN", "SimpleRNNCell", "Softmax",
    "SpatialDropout1D", "StackedRNNCells", "ThresholdedReLU", "TimeDistributed", "UpSampling2D", "ZeroPadding2D",
})
_MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
_WRAPPER_CLASSES = frozenset({"Bidirectional", "TimeDistributed", "RNN"})


class UploadError(ValueError):
    """The upload cannot become a model version; ``problems`` lists every reason, each saying what to do."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))


@dataclass(frozen=True)
class InspectedUpload:
    """What an upload turned out to be, and what to store.

    ``kind`` is one of:

    - ``"tfjs"``: a TF.js LayersModel with its weights; ``artifacts`` are checked and ready
      for ``versions.create_version``.
    - ``"tfjs_architecture"``: a ``model.json`` without weights, accepted only when the
      caller allows random initialisation. The worker initialises the weights with random
      values once, on the server, so every participant starts from the same weights
      (DISCO lets each browser initialise its own, so participants start apart).
    - ``"keras_h5"``, ``"keras_v3"`` (a ``.keras`` file), ``"saved_model"`` (a zip):
      ``source_bytes`` are stored under ``source_name`` and converted by a worker.
    """

    kind: str
    artifacts: LayersModelArtifacts | None
    source_name: str
    source_bytes: bytes | None
    keras_version: str

    @property
    def needs_conversion(self) -> bool:
        return self.kind != "tfjs"

    def describe(self) -> str:
        """Plain words for a job message, e.g. "a Keras 3 .keras model"."""
        keras = f"Keras {self.keras_version} " if self.keras_version else "Keras "
        return {
            "tfjs": "a TF.js layers model",
            "tfjs_architecture": "a TF.js model architecture (random initial weights)",
            "keras_h5": f"a {keras}.h5 model",
            "keras_v3": f"a {keras}.keras model",
            "saved_model": f"a {keras}SavedModel",
        }[self.kind]


def max_model_bytes() -> int:
    return int(settings.DISCO_MAX_MODEL_BYTES)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


# --- Content sniffing --------------------------------------------------------------------------------------------

def sniff(data: bytes) -> str:
    """What ``data`` looks like: "hdf5", "zip", "json", "url", "html", "empty" or "unknown"."""
    if not data:
        return "empty"
    if data.startswith(HDF5_MAGIC):
        return "hdf5"
    if data.startswith(ZIP_MAGICS):
        return "zip"
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"http://", b"https://", b"www.")) and len(data) < 4096:
        return "url"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")):
        return "html"
    if head.startswith((b"{", b"[")):
        return "json"
    return "unknown"


def _base_name(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name


def _refuse_kind(kind: str, name: str) -> UploadError | None:
    if kind == "url":
        return UploadError([
            f"{name} holds a web address, not a model. The server does not download models from the internet: "
            "download the model files yourself and upload them here."
        ])
    if kind == "html":
        return UploadError([
            f"{name} is a web page (HTML), not a model: the download probably saved the page instead of the file. "
            "Download the model file itself and upload it. " + ACCEPTED_FORMATS
        ])
    if kind == "empty":
        return UploadError([f"{name} is empty (0 bytes): upload the model file again."])
    return None


# --- Zip archives ------------------------------------------------------------------------------------------------

class SafeZip:
    """A zip archive checked against zip-slip, symlinks and zip bombs before any member is read.

    The central directory is checked when opened; ``read`` enforces the same limits on the
    bytes actually inflated (a forged directory cannot lie its way past them).
    """

    def __init__(self, data: bytes, label: str = "The zip file"):
        self.label = label
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise UploadError([f"{label} is damaged or truncated ({exc}): create it again and re-upload it."]) from None
        self.limit = max_model_bytes()
        self._read_total = 0
        problems: list[str] = []
        if len(infos) > MAX_ZIP_MEMBERS:
            problems.append(f"{label} holds {len(infos)} files; at most {MAX_ZIP_MEMBERS} are accepted. "
                            "Zip only the model's files.")
        for info in infos:
            problem = _unsafe_member(info)
            if problem:
                problems.append(f"{label} {problem}")
        total = sum(i.file_size for i in infos)
        packed = sum(i.compress_size for i in infos)
        if total > self.limit:
            problems.append(f"{label} unpacks to {_mb(total)}, more than this platform's limit of "
                            f"{_mb(self.limit)}. Upload a smaller model.")
        elif total > RATIO_CHECK_FROM_BYTES and total > MAX_COMPRESSION_RATIO * max(packed, 1):
            problems.append(f"{label} unpacks to {_mb(total)} from {packed:,} bytes (over {MAX_COMPRESSION_RATIO}:1): "
                            "it looks like a zip bomb and is refused. A real model does not compress that much.")
        if problems:
            raise UploadError(problems)
        self.infos = [i for i in infos if not i.is_dir()]

    def names(self) -> list[str]:
        return [i.filename for i in self.infos]

    def read(self, name: str) -> bytes:
        """A member's bytes, read in chunks and stopped as soon as a limit is passed."""
        info = self.zip.getinfo(name)
        out = bytearray()
        try:
            with self.zip.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    out += chunk
                    self._read_total += len(chunk)
                    if len(out) > info.file_size or self._read_total > self.limit:
                        raise UploadError([f"{self.label} inflates to more than it declares or than the limit of "
                                           f"{_mb(self.limit)}: it is refused as a zip bomb."])
                    if len(out) > RATIO_CHECK_FROM_BYTES and len(out) > MAX_COMPRESSION_RATIO * max(
                            info.compress_size, 1):
                        raise UploadError([f"{self.label}: {name} compresses over {MAX_COMPRESSION_RATIO}:1; "
                                           "it looks like a zip bomb and is refused."])
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            if isinstance(exc, UploadError):
                raise
            raise UploadError([f"{self.label} is damaged or truncated ({name}: {exc}): "
                               "create it again and re-upload it."]) from None
        return bytes(out)

    def extract_to(self, directory: Any, names: Iterable[str] | None = None) -> None:
        """Write members (all by default) under ``directory``; member paths were checked on opening."""
        from pathlib import Path

        root = Path(directory).resolve()
        for name in names if names is not None else self.names():
            target = (root / name).resolve()
            if root not in target.parents:  # pragma: no cover - refused on opening already
                raise UploadError([f"{self.label} has a member outside its folder: {name}."])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read(name))


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return (f"has a member with an unsafe path ({name!r}: absolute or with '..'), which could write outside "
                "its folder. Zip the model's folder with relative paths only.")
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"has a symbolic link ({name!r}); links are not accepted. Zip the real files."
    if info.flag_bits & 0x1:
        return f"is encrypted ({name!r}); upload an archive without a password."
    return None


# --- Inspection --------------------------------------------------------------------------------------------------

def inspect_model_upload(files: Mapping[str, bytes], *, allow_random_init: bool = False) -> InspectedUpload:
    """Say what the uploaded ``files`` (name -> bytes) are, or raise ``UploadError`` with every reason.

    Accepted: ``model.json`` + its ``.bin`` shards; one ``.zip`` holding those; one Keras
    ``.h5`` or ``.keras`` file (Keras 2 or 3); one zipped SavedModel of a Keras model.
    """
    if not files:
        raise UploadError(["No model file was uploaded. " + ACCEPTED_FORMATS])
    limit = max_model_bytes()
    total = sum(len(data) for data in files.values())
    if total > limit:
        raise UploadError([f"The upload is {_mb(total)}, more than this platform's limit of {_mb(limit)} "
                           "(setting DISCO_MAX_MODEL_BYTES). Upload a smaller model."])
    kinds = {name: sniff(data) for name, data in files.items()}
    for name, kind in kinds.items():
        if kind in ("url", "html") or (kind == "empty" and len(files) == 1):
            raise _refuse_kind(kind, _base_name(name))  # type: ignore[misc]
    if len(files) == 1:
        name, data = next(iter(files.items()))
        kind = kinds[name]
        if kind == "hdf5":
            return _inspect_h5(data)
        if kind == "zip":
            return _inspect_zip(data, allow_random_init=allow_random_init)
        if kind == "json":
            return _inspect_tfjs(data, {}, allow_random_init=allow_random_init)
        raise UploadError([f"{_base_name(name)} is not a model format this platform reads. " + ACCEPTED_FORMATS])
    archives = [_base_name(n) for n, k in kinds.items() if k in ("hdf5", "zip")]
    if archives:
        raise UploadError([f"Upload {', '.join(archives)} on its own: a Keras file or a zip is uploaded alone, "
                           "not together with other files."])
    jsons = [n for n, k in kinds.items() if k == "json"]
    if len(jsons) != 1:
        raise UploadError([
            f"Several files were uploaded, but {'none' if not jsons else len(jsons)} of them is a model.json "
            "(JSON). Upload one model.json with the .bin weight files its weightsManifest names."
        ])
    shards = {_base_name(n): d for n, d in files.items() if n != jsons[0]}
    return _inspect_tfjs(files[jsons[0]], shards, allow_random_init=allow_random_init)


def _inspect_tfjs(model_json: bytes, shards: Mapping[str, bytes], *, allow_random_init: bool) -> InspectedUpload:
    try:
        artifacts = parse_layers_model(model_json, shards, require_weights=bool(shards))
    except ModelFormatError as exc:
        raise UploadError(exc.problems) from None
    layer_problems = unsupported_layer_problems(artifacts.topology())
    if layer_problems:
        raise UploadError(layer_problems)
    if shards:
        return InspectedUpload(kind="tfjs", artifacts=artifacts, source_name="model.json", source_bytes=None,
                               keras_version="")
    if not allow_random_init:
        named = LayersModelArtifacts.peek_manifest(model_json)
        which = f" ({', '.join(named[:5])})" if named else ""
        raise UploadError([f"model.json came without its weight files{which}. Upload the .bin files together with "
                           "model.json (select them all at once, or zip them), or allow random initialisation "
                           "to start the task from random weights."])
    return InspectedUpload(kind="tfjs_architecture", artifacts=None, source_name="model.json",
                           source_bytes=model_json, keras_version="")


def _inspect_zip(data: bytes, *, allow_random_init: bool) -> InspectedUpload:
    archive = SafeZip(data)
    names = archive.names()
    root_names = set(names)
    if "config.json" in root_names and ("model.weights.h5" in root_names or "metadata.json" in root_names):
        return _inspect_keras_v3(data, archive)
    saved = [n for n in names if PurePosixPath(n).name == "saved_model.pb"]
    if saved:
        return _inspect_saved_model(data, archive, saved)
    jsons = [n for n in names if n.lower().endswith(".json")]
    model_jsons = [n for n in jsons if PurePosixPath(n).name == "model.json"] or jsons
    if len(model_jsons) == 1:
        folder = str(PurePosixPath(model_jsons[0]).parent)
        shards = {PurePosixPath(n).name: archive.read(n) for n in names
                  if n != model_jsons[0] and str(PurePosixPath(n).parent) == folder}
        return _inspect_tfjs(archive.read(model_jsons[0]), shards, allow_random_init=allow_random_init)
    if len(model_jsons) > 1:
        raise UploadError([f"The zip holds several model.json files ({', '.join(sorted(model_jsons)[:5])}): "
                           "zip one model only."])
    raise UploadError(["The zip holds no model.json, no Keras .keras contents and no SavedModel "
                       "(saved_model.pb). " + ACCEPTED_FORMATS])


def _inspect_keras_v3(data: bytes, archive: SafeZip) -> InspectedUpload:
    problems: list[str] = []
    try:
        config = json.loads(archive.read("config.json"))
        if not isinstance(config, dict) or "class_name" not in config:
            raise ValueError("no class_name")
    except (ValueError, UnicodeDecodeError):
        raise UploadError(["This .keras file is damaged: its config.json is not a Keras model configuration. "
                           "Save the model again with model.save('model.keras') and upload that file."]) from None
    if "model.weights.h5" not in archive.names():
        problems.append("This .keras file has no model.weights.h5: save the whole model with "
                        "model.save('model.keras').")
    version = ""
    if "metadata.json" in archive.names():
        try:
            version = str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
        except (ValueError, UnicodeDecodeError, AttributeError):
            version = ""
    problems += unsupported_layer_problems(config)
    if problems:
        raise UploadError(problems)
    return InspectedUpload(kind="keras_v3", artifacts=None, source_name="model.keras", source_bytes=data,
                           keras_version=version.split(".")[0])


def _inspect_saved_model(data: bytes, archive: SafeZip, saved: list[str]) -> InspectedUpload:
    if len(saved) > 1:
        raise UploadError([f"The zip holds several SavedModels ({', '.join(saved[:5])}): zip one model folder."])
    folder = PurePosixPath(saved[0]).parent
    metadata = str(folder / "keras_metadata.pb") if str(folder) != "." else "keras_metadata.pb"
    if metadata not in archive.names():
        raise UploadError([
            "This SavedModel has no Keras metadata (keras_metadata.pb): it was exported for inference only "
            "(for example with Keras 3's model.export()), and its layers cannot be rebuilt for training. "
            "Upload the Keras file instead: model.save('model.keras') (or 'model.h5')."
        ])
    return InspectedUpload(kind="saved_model", artifacts=None, source_name="saved_model.zip", source_bytes=data,
                           keras_version="2")


def h5_keras_info(data: bytes) -> tuple[str, dict[str, Any]]:
    """(Keras major version, model config) from a Keras HDF5 file; ``UploadError`` if it is not one."""
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
    if isinstance(raw_config, bytes):
        raw_config = raw_config.decode("utf-8", "replace")
    try:
        config = json.loads(str(raw_config))
    except ValueError:
        raise UploadError(["This .h5 file's model configuration is not valid JSON: save the model again."]) from None
    version = attrs.get("keras_version", b"")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return str(version).split(".")[0], config


def _inspect_h5(data: bytes) -> InspectedUpload:
    version, config = h5_keras_info(data)
    problems = unsupported_layer_problems(config)
    if problems:
        raise UploadError(problems)
    return InspectedUpload(kind="keras_h5", artifacts=None, source_name="model.h5", source_bytes=data,
                           keras_version=version)


# --- Layers TF.js can train ----------------------------------------------------------------------------------------

def _layer_entries(config: Any) -> Iterable[dict[str, Any]]:
    """Every layer entry of a Keras (2 or 3) model config, nested models and wrappers included."""
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else inner if isinstance(inner, list) else None
    if config.get("class_name") in _MODEL_CLASSES and isinstance(layers, list):
        for layer in layers:
            if isinstance(layer, dict):
                yield layer
                yield from _layer_entries(layer)
    elif config.get("class_name") in _WRAPPER_CLASSES and isinstance(inner, dict):
        for key in ("layer", "cell", "forward_layer", "backward_layer"):
            child = inner.get(key)
            if isinstance(child, dict) and "class_name" in child:
                yield child
                yield from _layer_entries(child)


def unsupported_layer_problems(config: Any) -> list[str]:
    """A problem naming every layer whose class TF.js 4.22 cannot load and train (empty if none)."""
    if isinstance(config, dict) and "model_config" in config:
        config = config["model_config"]
    bad = []
    for layer in _layer_entries(config):
        cls = layer.get("class_name")
        if isinstance(cls, str) and cls not in TFJS_LAYER_CLASSES:
            name = layer.get("name") or (layer.get("config") or {}).get("name") or "?"
            bad.append(f"{cls} (layer {name!r})")
    if not bad:
        return []
    return ["The model uses layers TF.js cannot train: " + ", ".join(bad) + ". Rebuild it with standard Keras "
            "layers (Dense, Conv2D, Dropout, ...): Lambda layers, TensorFlow operations applied to Keras tensors "
            "and custom layer classes do not run in the browser."]


# --- Does the model fit the task? ------------------------------------------------------------------------------------

def _layers(topology: dict[str, Any]) -> list[dict[str, Any]]:
    config = topology.get("config", {})
    layers = config.get("layers", []) if isinstance(config, dict) else config
    return [layer for layer in layers if isinstance(layer, dict)]


def _layer_name(layer: dict[str, Any]) -> str:
    return layer.get("name") or (layer.get("config") or {}).get("name") or "?"


def _inbound_names(layer: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for node in layer.get("inbound_nodes") or []:
        if isinstance(node, list):
            names += [entry[0] for entry in node if isinstance(entry, list) and entry and isinstance(entry[0], str)]
    return names


_PASS_THROUGH = frozenset({"Activation", "Softmax", "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise",
                           "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "PReLU", "Reshape", "Flatten"})


def output_layer_units(topology: dict[str, Any]) -> tuple[int | None, str, str]:
    """(units, activation, layer name) of the model's first output, looking through trailing Activation layers."""
    layers = _layers(topology)
    if not layers:
        return None, "", ""
    by_name = {_layer_name(layer): layer for layer in layers}
    if topology.get("class_name") == "Sequential":
        chain = list(reversed(layers))
    else:
        outputs = (topology.get("config") or {}).get("output_layers") or []
        first = outputs[0] if outputs and isinstance(outputs[0], list) else outputs
        layer = by_name.get(first[0]) if first else None
        chain = []
        while layer is not None and len(chain) < len(layers):
            chain.append(layer)
            inbound = _inbound_names(layer)
            layer = by_name.get(inbound[0]) if len(inbound) == 1 else None
    activation = ""
    for layer in chain:
        cls, cfg = layer.get("class_name"), layer.get("config") or {}
        if cls == "Softmax":
            activation = activation or "softmax"
        elif cls == "Activation":
            activation = activation or str(cfg.get("activation", ""))
        elif cls == "Dense":
            act = str(cfg.get("activation", "linear"))
            return int(cfg["units"]), (activation or act), _layer_name(layer)
        elif cls not in _PASS_THROUGH:
            return None, activation, _layer_name(layer)
    return None, activation, ""


# The settings a model's input and output shapes must agree with (check_model_fits_task).
SHAPE_FIELDS = ("data_type", "input_columns", "image_height", "image_width", "image_channels", "labels",
                "max_sequence_length")


def shape_settings_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether going from settings ``before`` to ``after`` changes what a model's shapes must be."""
    return any(before.get(name) != after.get(name) for name in SHAPE_FIELDS)


def version_fit_problems(version: Any, values: Mapping[str, Any]) -> list[str]:
    """``check_model_fits_task`` for a stored ``ModelVersion`` (only its model.json is read)."""
    from .versions import read_file

    return check_model_fits_task(parse_layers_model(read_file(version, "model.json"), {}, require_weights=False),
                                 values)


def check_model_fits_task(artifacts: LayersModelArtifacts, values: Mapping[str, Any]) -> list[str]:
    """Problems (empty if none) between the model's input/output shapes and the task's fields.

    ``values`` are Task field values (the names of ``tasks.spec.TaskSpec``).
    """
    problems: list[str] = []
    shapes = artifacts.input_shapes()
    data_type = values.get("data_type")
    first = shapes[0] if shapes else None
    if first is None:
        problems.append("The model's input shape could not be read from its configuration: give its first layer "
                        "an input shape (keras.Input(shape=...)).")
    elif data_type == "image":
        problems += _image_problems(first, values)
    elif data_type == "tabular":
        columns = list(values.get("input_columns") or [])
        if columns and first[-1] != len(columns):
            problems.append(f"The model expects {first[-1]} input values per row (input shape {_shape(first)}), but "
                            f"the task has {len(columns)} input columns ({', '.join(map(str, columns))}). Make the "
                            "model's input size match the number of input columns, or change the columns.")
    elif data_type == "text":
        length = values.get("max_sequence_length")
        if length and (len(first) < 2 or first[1] != length):
            problems.append(f"The model's input shape {_shape(first)} does not take sequences of "
                            f"{length} tokens (the task's maximum sequence length): its first input should be "
                            f"[None, {length}].")
    labels = list(values.get("labels") or [])
    if labels:
        units, activation, name = output_layer_units(artifacts.topology())
        n = len(labels)
        if units is None:
            problems.append(f"The model's output size could not be found (its last layer {name!r} is not Dense): "
                            f"end the model with Dense({n}, activation='softmax') for the task's {n} labels.")
        elif not (units == n or (n == 2 and units == 1 and activation == "sigmoid")):
            shown = ", ".join(map(str, labels[:10])) + (", ..." if n > 10 else "")
            expected = f"{n} units" + (" (or 1 unit with a sigmoid activation)" if n == 2 else "")
            problems.append(f"The model's output layer {name!r} has {units} unit{'s' if units != 1 else ''}, but the "
                            f"task has {n} labels ({shown}): it needs {expected}.")
    return problems


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def _image_problems(shape: list[Any], values: Mapping[str, Any]) -> list[str]:
    if len(shape) != 4:
        return [f"An image task needs a model whose input is [None, height, width, channels]; this model's input "
                f"is {_shape(shape)}."]
    problems = []
    _, height, width, channels = shape
    for label, found, expected in (("height", height, values.get("image_height")),
                                   ("width", width, values.get("image_width"))):
        if expected and found != expected:
            problems.append(f"The model's input image {label} is {found}, but the task's image {label} is "
                            f"{expected} (model input {_shape(shape)}).")
    expected_channels = values.get("image_channels")
    if expected_channels and channels != expected_channels:
        problems.append(f"The model takes images with {channels} channel(s), but the task says {expected_channels} "
                        f"(model input {_shape(shape)}).")
    elif not expected_channels and channels not in (1, 3, 4):
        problems.append(f"The model's input has {channels} channels; images have 1 (grey), 3 (RGB) or 4 (RGBA).")
    return problems
