"""Does a model fit its task? Its input and output shapes against the task's settings.

Used by the creation service, the admin and "Make current"; reads only a model's
``model.json``, never its weights, and imports no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model_files.shapes import ShapeUnknownError, model_output_shapes
from .tfjs_format import LayersModelArtifacts, parse_layers_model


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


def check_model_fits_task(artifacts: LayersModelArtifacts, values: Mapping[str, Any], *,
                          output_shapes: list[list[int | None]] | None = None) -> list[str]:
    """Problems (empty if none) between the model's input/output shapes and the task's fields.

    ``values`` are Task field values (the names of ``tasks.spec.TaskSpec``). ``output_shapes``
    are Keras's own, when a conversion computed them; otherwise they are followed through
    the model's configuration (``model_files.shapes``).
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
        problems += _output_problems(artifacts, labels, output_shapes)
    return problems


def _output_problems(artifacts: LayersModelArtifacts, labels: list[Any],
                     output_shapes: list[list[int | None]] | None) -> list[str]:
    _, activation, _ = output_layer_units(artifacts.topology())
    name = _output_layer_name(artifacts.topology())
    n = len(labels)
    try:
        outputs = output_shapes or model_output_shapes(artifacts.topology())
    except ShapeUnknownError as exc:
        return [f"The model's output size could not be worked out from its configuration ({exc}): end the model "
                f"with Dense({n}, activation='softmax') for the task's {n} labels, or upload it as a Keras file."]
    output = outputs[0] if outputs else []
    units = output[-1] if len(output) == 2 else None
    problems = []
    if units is None:
        problems.append(f"The model's output has shape {_shape(output)}, but a task with {n} labels needs one "
                        f"score per label, [None, {n}]: end the model with Dense({n}, activation='softmax').")
    elif not (units == n or (n == 2 and units == 1 and activation == "sigmoid")):
        shown = ", ".join(map(str, labels[:10])) + (", ..." if n > 10 else "")
        expected = f"{n} units" + (" (or 1 unit with a sigmoid activation)" if n == 2 else "")
        problems.append(f"The model's output (layer {name!r}, shape {_shape(output)}) has {units} "
                        f"unit{'s' if units != 1 else ''}, but the task has {n} labels ({shown}): it needs "
                        f"{expected}.")
    return problems


def _output_layer_name(topology: dict[str, Any]) -> str:
    layers = _layers(topology)
    if topology.get("class_name") == "Sequential":
        return _layer_name(layers[-1]) if layers else "?"
    outputs = (topology.get("config") or {}).get("output_layers") or []
    first = outputs[0] if outputs and isinstance(outputs[0], list) else outputs
    return str(first[0]) if first else "?"


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
