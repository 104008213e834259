"""A model's output shapes, computed from its Keras configuration without Keras.

The fit check needs the shape a model really produces, not the units of its last ``Dense``
(Keras's own MobileNet ends in ``Conv2D -> Reshape -> Activation``). Keras computes shapes
by building the model, which the web process never does with a stranger's file; this module
propagates shapes through the config instead, layer by layer, for the layers TF.js can train
(channels-last, as TF.js uses). A layer it cannot follow raises ``ShapeUnknownError`` naming
it, and the caller says so. Converted uploads get Keras's own shapes from the isolated process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Shape = list[int | None]


class ShapeUnknownError(ValueError):
    """The shape could not be followed through ``layer``."""

    def __init__(self, layer: str, why: str = ""):
        self.layer = layer
        super().__init__(f"layer {layer!r}" + (f": {why}" if why else ""))


_IDENTITY = frozenset({
    "Activation", "Softmax", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU", "Dropout", "AlphaDropout",
    "GaussianDropout", "GaussianNoise", "SpatialDropout1D", "BatchNormalization", "LayerNormalization", "Rescaling",
    "Masking", "ActivityRegularization",
})
_MERGE = frozenset({"Add", "Multiply", "Average", "Maximum", "Minimum", "Subtract"})
_MODELS = frozenset({"Sequential", "Functional", "Model"})


def _tuple(value: Any, rank: int) -> list[int]:
    if isinstance(value, int):
        return [value] * rank
    return [int(v) for v in value]


def _window(size: int | None, kernel: int, stride: int, padding: str, dilation: int = 1) -> int | None:
    if size is None:
        return None
    if padding == "same":
        return math.ceil(size / stride)
    effective = (kernel - 1) * dilation + 1
    return max(0, (size - effective) // stride + 1)


def _spatial(config: dict[str, Any], shape: Shape, rank: int, kernel_key: str, stride_default: Any) -> list:
    if config.get("data_format", "channels_last") not in ("channels_last", None):
        raise ShapeUnknownError(config.get("name", "?"), "channels_first is not followed")
    kernels = _tuple(config[kernel_key], rank)
    strides = _tuple(config.get("strides") or stride_default or kernels, rank)
    dilations = _tuple(config.get("dilation_rate", 1), rank)
    padding = str(config.get("padding", "valid")).lower()
    return [_window(shape[1 + i], kernels[i], strides[i], padding, dilations[i]) for i in range(rank)]


def _conv(config: dict[str, Any], shape: Shape, rank: int, channels: int | None) -> Shape:
    return [shape[0], *_spatial(config, shape, rank, "kernel_size", 1), channels]


def _transpose(config: dict[str, Any], shape: Shape) -> Shape:
    kernels, strides = _tuple(config["kernel_size"], 2), _tuple(config.get("strides", 1), 2)
    padding = str(config.get("padding", "valid")).lower()
    dims = []
    for i in range(2):
        size = shape[1 + i]
        dims.append(None if size is None else size * strides[i] + (0 if padding == "same" else
                                                                    max(kernels[i] - strides[i], 0)))
    return [shape[0], *dims, int(config["filters"])]


def _reshape(config: dict[str, Any], shape: Shape) -> Shape:
    target = [int(d) for d in config["target_shape"]]
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        total = math.prod(shape[1:]) if None not in shape[1:] else None
        if total is None or known == 0:
            return [shape[0], *[None if d == -1 else d for d in target]]
        target = [total // known if d == -1 else d for d in target]
    return [shape[0], *target]


def _rnn(config: dict[str, Any], shape: Shape, units: int) -> Shape:
    if config.get("return_state"):
        raise ShapeUnknownError(config.get("name", "?"), "return_state gives several outputs")
    return [shape[0], shape[1], units] if config.get("return_sequences") else [shape[0], units]


def _single(name: str, cls: str, config: dict[str, Any], shape: Shape) -> Shape:
    """The output shape of a one-input layer (channels-last)."""
    rank = len(shape) - 2
    rules: dict[str, Callable[[], Shape]] = {
        "Dense": lambda: [*shape[:-1], int(config["units"])],
        "Flatten": lambda: [shape[0], math.prod(shape[1:]) if None not in shape[1:] else None],
        "Reshape": lambda: _reshape(config, shape),
        "Permute": lambda: [shape[0], *[shape[int(d)] for d in config["dims"]]],
        "RepeatVector": lambda: [shape[0], int(config["n"]), shape[1]],
        "Embedding": lambda: [*shape, int(config["output_dim"])],
        "Conv1D": lambda: _conv(config, shape, 1, int(config["filters"])),
        "Conv2D": lambda: _conv(config, shape, 2, int(config["filters"])),
        "Conv3D": lambda: _conv(config, shape, 3, int(config["filters"])),
        "SeparableConv2D": lambda: _conv(config, shape, 2, int(config["filters"])),
        "DepthwiseConv2D": lambda: _conv(config, shape, 2, None if shape[-1] is None
                                         else shape[-1] * int(config.get("depth_multiplier", 1))),
        "Conv2DTranspose": lambda: _transpose(config, shape),
        "GlobalAveragePooling1D": lambda: _global(config, shape),
        "GlobalAveragePooling2D": lambda: _global(config, shape),
        "GlobalMaxPooling1D": lambda: _global(config, shape),
        "GlobalMaxPooling2D": lambda: _global(config, shape),
        "ZeroPadding2D": lambda: _pad(config, shape, 1),
        "Cropping2D": lambda: _pad(config, shape, -1),
        "UpSampling2D": lambda: [shape[0], *[None if s is None else s * f for s, f in
                                             zip(shape[1:3], _tuple(config.get("size", 2), 2), strict=True)],
                                 shape[3]],
        "Resizing": lambda: [shape[0], int(config["height"]), int(config["width"]), shape[-1]],
        "CenterCrop": lambda: [shape[0], int(config["height"]), int(config["width"]), shape[-1]],
        "CategoryEncoding": lambda: [shape[0], int(config["num_tokens"])],
        "LSTM": lambda: _rnn(config, shape, int(config["units"])),
        "GRU": lambda: _rnn(config, shape, int(config["units"])),
        "SimpleRNN": lambda: _rnn(config, shape, int(config["units"])),
    }
    for pool in ("MaxPooling", "AveragePooling", "MaxPool", "AvgPool"):
        for dims in (1, 2, 3):
            rules[f"{pool}{dims}D"] = lambda dims=dims: [shape[0], *_spatial(config, shape, dims, "pool_size",
                                                                             config.get("pool_size")), shape[-1]]
    for alias in ("GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D"):
        rules[alias] = lambda: _global(config, shape)
    if cls in _IDENTITY:
        return list(shape)
    rule = rules.get(cls)
    if rule is None or (cls.startswith(("Conv", "Separable", "Depthwise")) and rank < 1):
        raise ShapeUnknownError(name, f"{cls} is not followed")
    return rule()


def _global(config: dict[str, Any], shape: Shape) -> Shape:
    if config.get("keepdims"):
        return [shape[0], *[1] * (len(shape) - 2), shape[-1]]
    return [shape[0], shape[-1]]


def _pad(config: dict[str, Any], shape: Shape, sign: int) -> Shape:
    key = "padding" if sign > 0 else "cropping"
    value = config.get(key, 1 if sign > 0 else 0)
    pairs = [[value, value]] * 2 if isinstance(value, int) else [
        [v, v] if isinstance(v, int) else list(v) for v in value]
    dims = [None if s is None else s + sign * sum(p) for s, p in zip(shape[1:3], pairs, strict=True)]
    return [shape[0], *dims, shape[3]]


def _layer_output(layer: dict[str, Any], inputs: list[Shape]) -> list[Shape]:
    cls = str(layer.get("class_name"))
    config = layer.get("config") or {}
    name = str(layer.get("name") or config.get("name") or "?")
    if cls in _MODELS:
        return model_output_shapes(layer, inputs)
    if cls in _MERGE:
        return [list(inputs[0])]
    if cls == "Concatenate":
        axis = int(config.get("axis", -1))
        first = list(inputs[0])
        sizes = [s[axis] for s in inputs]
        first[axis] = None if None in sizes else sum(sizes)
        return [first]
    if cls == "Dot":
        axes = config.get("axes", -1)
        a, b = inputs[0], inputs[1]
        ax = _tuple(axes, 2)
        ax = [x % len(s) for x, s in zip(ax, (a, b), strict=True)]
        return [[a[0], *[d for i, d in enumerate(a) if i not in (0, ax[0])],
                 *[d for i, d in enumerate(b) if i not in (0, ax[1])]]]
    if cls == "TimeDistributed":
        inner = config.get("layer") or {}
        shape = inputs[0]
        out = _layer_output(inner, [[shape[0], *shape[2:]]])[0]
        return [[shape[0], shape[1], *out[1:]]]
    if cls == "Bidirectional":
        inner = config.get("layer") or {}
        out = _layer_output(inner, inputs)[0]
        if config.get("merge_mode", "concat") == "concat" and out[-1] is not None:
            out[-1] *= 2
        return [out]
    if len(inputs) != 1:
        raise ShapeUnknownError(name, f"{cls} with {len(inputs)} inputs is not followed")
    return [_single(name, cls, config, inputs[0])]


def _input_shape(layer: dict[str, Any]) -> Shape | None:
    config = layer.get("config") or {}
    shape = config.get("batch_input_shape") or config.get("batch_shape")
    return None if shape is None else [None if d is None else int(d) for d in shape]


def model_output_shapes(model: dict[str, Any], inputs: list[Shape] | None = None) -> list[Shape]:
    """The output shapes of a Sequential or Functional model config (``inputs`` given when it is nested)."""
    config = model.get("config") or {}
    layers = config.get("layers", []) if isinstance(config, dict) else config
    layers = [layer for layer in layers if isinstance(layer, dict)]
    try:
        if model.get("class_name") == "Sequential":
            shape = inputs[0] if inputs else None
            for layer in layers:
                if layer.get("class_name") == "InputLayer":
                    shape = _input_shape(layer)
                    continue
                if shape is None:
                    shape = _input_shape(layer)
                if shape is None:
                    raise ShapeUnknownError(str((layer.get("config") or {}).get("name", "?")), "no input shape")
                shape = _layer_output(layer, [shape])[0]
            if shape is None:
                raise ShapeUnknownError(str(config.get("name", "?")), "an empty model")
            return [shape]
        return _functional(config, layers, inputs)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        if isinstance(exc, ShapeUnknownError):
            raise
        raise ShapeUnknownError(str(config.get("name", "?")), f"its configuration is incomplete ({exc})") from None


def _functional(config: dict[str, Any], layers: list[dict[str, Any]], inputs: list[Shape] | None) -> list[Shape]:
    def layer_name(layer: dict[str, Any]) -> str:
        return str(layer.get("name") or (layer.get("config") or {}).get("name"))

    outputs: dict[tuple[str, int], list[Shape]] = {}
    input_refs = [ref[0] for ref in config.get("input_layers", [])]
    for index, name in enumerate(input_refs):
        layer = next((entry for entry in layers if layer_name(entry) == name), None)
        shape = inputs[index] if inputs and index < len(inputs) else (_input_shape(layer) if layer else None)
        if shape is None:
            raise ShapeUnknownError(name, "no input shape")
        outputs[(name, 0)] = [shape]
    pending = [layer for layer in layers if layer_name(layer) not in input_refs]
    for _ in range(len(pending) + 1):
        progressed = False
        for layer in list(pending):
            nodes = layer.get("inbound_nodes") or []
            done = True
            for node_index, node in enumerate(nodes):
                if (layer_name(layer), node_index) in outputs:
                    continue
                refs = [entry for entry in node if isinstance(entry, list)] if isinstance(node, list) else []
                if not refs or any((ref[0], int(ref[1])) not in outputs for ref in refs):
                    done = False
                    continue
                shapes = [outputs[(ref[0], int(ref[1]))][int(ref[2])] for ref in refs]
                outputs[(layer_name(layer), node_index)] = _layer_output(layer, shapes)
                progressed = True
            if done:
                pending.remove(layer)
        if not pending or not progressed:
            break
    result = []
    for ref in config.get("output_layers", []):
        key = (ref[0], int(ref[1]))
        if key not in outputs:
            raise ShapeUnknownError(str(ref[0]), "its inputs could not be followed")
        result.append(outputs[key][int(ref[2])])
    return result
