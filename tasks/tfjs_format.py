"""Reading and checking TF.js LayersModel artifacts (``model.json`` + weight shards).

Everything the platform stores as a model version passes through
``parse_layers_model`` first, so a stored version always parses, is a trainable
LayersModel and has exactly the weight bytes its manifest announces.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPE_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2}

GRAPH_MODEL_HELP = (
    "This is a TF.js graph model, which TF.js can only run for inference, not train. "
    "Convert the original Keras model to a layers model instead, e.g. "
    "`tensorflowjs_converter --input_format=keras --output_format=tfjs_layers_model model.h5 out_dir/`, "
    "or upload the Keras file (.h5, .keras, or a zipped SavedModel) and the platform converts it."
)


class ModelFormatError(ValueError):
    """The files are not a usable TF.js LayersModel; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(" ".join(problems))


@dataclass(frozen=True)
class WeightSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class LayersModelArtifacts:
    """A checked LayersModel: its parsed ``model.json`` and its shards in manifest order."""

    model_json: dict[str, Any]
    shards: dict[str, bytes]
    weights: tuple[WeightSpec, ...]

    @staticmethod
    def peek_manifest(model_json_bytes: bytes) -> list[str]:
        """The shard paths a model.json names, without checking anything else."""
        try:
            manifest = json.loads(model_json_bytes).get("weightsManifest") or []
            return [p for group in manifest for p in group.get("paths", [])]
        except (ValueError, AttributeError, TypeError):
            return []

    @property
    def parameter_count(self) -> int:
        return sum(w.size for w in self.weights)

    def model_json_bytes(self) -> bytes:
        return json.dumps(self.model_json, separators=(",", ":")).encode()

    @property
    def total_bytes(self) -> int:
        return len(self.model_json_bytes()) + sum(len(b) for b in self.shards.values())

    def sha256(self) -> str:
        """Digest of model.json followed by every shard in manifest order."""
        digest = hashlib.sha256(self.model_json_bytes())
        for data in self.shards.values():
            digest.update(data)
        return digest.hexdigest()

    def topology(self) -> dict[str, Any]:
        topology = self.model_json["modelTopology"]
        return topology.get("model_config", topology)

    def input_shapes(self) -> list[list[int | None]]:
        """The model's input shapes, batch dimension included (``None``), as Keras records them."""
        topology = self.topology()
        config = topology.get("config", {})
        layers = config.get("layers", []) if isinstance(config, dict) else config
        if topology.get("class_name") == "Sequential":
            first = layers[0]["config"] if layers else {}
            shape = first.get("batch_input_shape") or first.get("batch_shape")
            return [list(shape)] if shape else []
        by_name = {layer.get("name") or layer["config"].get("name"): layer for layer in layers}
        shapes = []
        for entry in config.get("input_layers", []):
            layer = by_name.get(entry[0], {}).get("config", {})
            shape = layer.get("batch_input_shape") or layer.get("batch_shape")
            if shape:
                shapes.append(list(shape))
        return shapes


def _check_topology(data: dict[str, Any], problems: list[str]) -> None:
    fmt = data.get("format")
    topology = data.get("modelTopology")
    if fmt == "graph-model" or (isinstance(topology, dict) and "node" in topology):
        problems.append(GRAPH_MODEL_HELP)
        return
    if fmt not in (None, "layers-model"):
        problems.append(f"model.json has format {fmt!r}; only 'layers-model' can be trained in the browser.")
    if not isinstance(topology, dict):
        problems.append("model.json has no modelTopology: it does not describe a Keras/TF.js layers model.")
        return
    config = topology.get("model_config", topology)
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        problems.append("modelTopology does not hold a Keras model config (class_name + config).")


def _check_manifest(data: dict[str, Any], shards: Mapping[str, bytes], problems: list[str],
                    *, require_weights: bool) -> tuple[list[WeightSpec], dict[str, bytes]]:
    manifest = data.get("weightsManifest", [])
    if not isinstance(manifest, list):
        problems.append("weightsManifest must be a list of weight groups.")
        return [], {}
    specs: list[WeightSpec] = []
    ordered: dict[str, bytes] = {}
    for index, group in enumerate(manifest):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or not isinstance(
            group.get("weights"), list
        ):
            problems.append(f"weightsManifest[{index}] needs a 'paths' list and a 'weights' list.")
            continue
        expected = 0
        for weight in group["weights"]:
            spec, nbytes, problem = _weight_spec(weight)
            if problem:
                problems.append(problem)
                continue
            specs.append(spec)
            expected += nbytes
        actual, present = 0, True
        for path in group["paths"]:
            if not isinstance(path, str) or not path or "/" in path or "\\" in path or path.startswith("."):
                problems.append(f"Weight path {path!r} must be a plain file name such as group1-shard1of1.bin.")
                present = False
                continue
            if path not in shards:
                present = False
                if require_weights:
                    problems.append(f"The manifest names weight file {path!r}, which was not provided.")
                continue
            ordered[path] = shards[path]
            actual += len(shards[path])
        if present and actual != expected:
            problems.append(
                f"Weight group {index + 1} ({', '.join(map(str, group['paths']))}) holds {actual} bytes, "
                f"but its weights' shapes and dtypes need {expected} bytes: the files are truncated or "
                "belong to another model."
            )
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"Weights named more than once in the manifest: {', '.join(duplicates)}.")
    extra = sorted(set(shards) - set(ordered) - {p for g in manifest if isinstance(g, dict)
                                                 for p in g.get("paths", []) if isinstance(p, str)})
    if extra:
        problems.append(f"Files not named in model.json's weightsManifest: {', '.join(extra)}.")
    return specs, ordered


def _weight_spec(weight: Any) -> tuple[WeightSpec, int, str | None]:
    if not isinstance(weight, dict) or not isinstance(weight.get("name"), str):
        return WeightSpec("", (), ""), 0, f"A manifest weight entry is malformed: {weight!r:.80}."
    name, shape, dtype = weight["name"], weight.get("shape"), weight.get("dtype", "float32")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return WeightSpec(name, (), dtype), 0, f"Weight {name!r} has an invalid shape {shape!r}."
    if dtype not in ("float32", "int32", "bool"):
        return WeightSpec(name, (), dtype), 0, f"Weight {name!r} has unsupported dtype {dtype!r}."
    stored = (weight.get("quantization") or {}).get("dtype", dtype)
    if stored not in DTYPE_BYTES:
        return WeightSpec(name, (), dtype), 0, f"Weight {name!r} has unsupported quantization {stored!r}."
    spec = WeightSpec(name, tuple(shape), dtype)
    return spec, spec.size * DTYPE_BYTES[stored], None


def parse_layers_model(model_json: bytes, shards: Mapping[str, bytes], *,
                       require_weights: bool = True) -> LayersModelArtifacts:
    """Check ``model_json`` and its ``shards`` (file name -> bytes); raise ``ModelFormatError`` listing all problems."""
    try:
        data = json.loads(model_json.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelFormatError(["model.json is not UTF-8 text: is it really a model.json file?"]) from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise ModelFormatError([f"model.json is not valid JSON ({where})."]) from None
    if not isinstance(data, dict):
        raise ModelFormatError(["model.json must hold a JSON object with modelTopology and weightsManifest."])
    problems: list[str] = []
    _check_topology(data, problems)
    if problems:
        raise ModelFormatError(problems)
    specs, ordered = _check_manifest(data, shards, problems, require_weights=require_weights)
    if problems:
        raise ModelFormatError(problems)
    return LayersModelArtifacts(model_json=data, shards=ordered, weights=tuple(specs))


def read_layers_model_dir(directory: Path, model_json_name: str = "model.json") -> LayersModelArtifacts:
    """Read and check a LayersModel written to ``directory`` (model.json + shards beside it)."""
    raw = (directory / model_json_name).read_bytes()
    names = [p for p in LayersModelArtifacts.peek_manifest(raw)
             if isinstance(p, str) and "/" not in p and "\\" not in p and not p.startswith(".")]
    shards = {p: (directory / p).read_bytes() for p in names if (directory / p).is_file()}
    return parse_layers_model(raw, shards)
