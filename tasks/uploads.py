"""Inspecting an uploaded model before anything is stored.

``inspect_model_upload`` sniffs what the uploaded files really are (from their bytes,
never from their names), refuses unsafe archives and unusable models with reasons in
plain words, and tells the caller what to do next:

- a TF.js LayersModel (``kind == "tfjs"``) comes back as checked artifacts, ready for
  ``tasks.versions.create_version``;
- everything else (Keras ``.h5``/``.keras`` from Keras 2 or 3, a zipped SavedModel, an
  architecture-only ``model.json``) comes back as the bytes to store and convert in a
  Celery worker with ``tasks.keras_import.convert_keras_source``.

Archives, configurations and shapes are checked by ``tasks.model_files``; whether a model
fits its task by ``tasks.model_fit``. Nothing here imports TensorFlow: this module runs in
web requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.conf import settings

from disco_client.model_allowlist import config_problems

from .model_files.archives import SafeZip, megabytes
from .model_files.errors import UploadError
from .model_files.hdf5 import h5_keras_info
from .model_files.saved_model import saved_model_problems
from .tfjs_format import LayersModelArtifacts, ModelFormatError, parse_layers_model

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

ACCEPTED_FORMATS = (
    "Accepted model uploads: a TF.js layers model (model.json with its .bin weight files, or one .zip holding "
    "them); a Keras .h5 or .keras file (Keras 2 or Keras 3); or a zipped TensorFlow SavedModel folder of a Keras "
    "model."
)


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
        raise UploadError([f"The upload is {megabytes(total)}, more than this platform's limit of {megabytes(limit)} "
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
    layer_problems = config_problems(artifacts.model_json)
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
    archive = SafeZip(data, limit=max_model_bytes())
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
    problems += config_problems(config)
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
    problems = saved_model_problems(archive.read(metadata))
    if problems:
        raise UploadError(problems)
    return InspectedUpload(kind="saved_model", artifacts=None, source_name="saved_model.zip", source_bytes=data,
                           keras_version="2")


def _inspect_h5(data: bytes) -> InspectedUpload:
    version, config, training_config = h5_keras_info(data)
    problems = config_problems({"model_config": config, "training_config": training_config})
    if problems:
        raise UploadError(problems)
    return InspectedUpload(kind="keras_h5", artifacts=None, source_name="model.h5", source_bytes=data,
                           keras_version=version)
