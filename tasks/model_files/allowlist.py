"""Which Keras objects an uploaded model may be made of."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
