"""Which Keras objects an uploaded model may be made of, checked before any Keras code runs.

A Keras configuration is JSON in which every object is ``{"class_name": ..., "config": ...}``,
and loading it builds each object. Legacy ``.h5`` files and SavedModels are loaded by
``tf_keras`` without safe mode, so a Python function marshalled anywhere in the config (a
Lambda nested in a ``TimeDistributed``, a cell of ``StackedRNNCells``, a wrapper's ``*_fn``)
runs when the model is built. ``config_problems`` therefore walks the *whole* document, at any
depth, and accepts only:

- objects whose ``class_name`` is a built-in Keras layer TF.js can train, or a built-in
  initializer, regularizer, constraint, optimizer, loss, metric or learning-rate schedule;
- ``module`` paths inside ``keras`` / ``tf_keras``, and ``registered_name`` of such objects;
- no serialized function in any form (``function_type``, a non-empty ``*_fn`` field, a Keras 3
  ``__lambda__``, marshalled bytecode under ``function``).

Everything else is refused by name and place, with the reason. The walk is iterative and
bounded, so a hostile document cannot exhaust the stack or the CPU.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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
INITIALIZER_CLASSES = frozenset({
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity", "LecunNormal", "LecunUniform",
    "Ones", "Orthogonal", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling", "Zeros",
})
REGULARIZER_CLASSES = frozenset({"L1", "L2", "L1L2", "OrthogonalRegularizer"})
CONSTRAINT_CLASSES = frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "RadialConstraint"})
OPTIMIZER_CLASSES = frozenset({"Adadelta", "Adafactor", "Adagrad", "Adam", "Adamax", "AdamW", "Ftrl", "Lion",
                               "LossScaleOptimizer", "Nadam", "RMSprop", "SGD"})
LOSS_CLASSES = frozenset({
    "BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy", "CategoricalFocalCrossentropy",
    "CategoricalHinge", "CosineSimilarity", "Hinge", "Huber", "KLDivergence", "LogCosh", "MeanAbsoluteError",
    "MeanAbsolutePercentageError", "MeanSquaredError", "MeanSquaredLogarithmicError", "Poisson",
    "SparseCategoricalCrossentropy", "SquaredHinge", "LossFunctionWrapper", "Reduction",
})
METRIC_CLASSES = frozenset({
    "AUC", "Accuracy", "BinaryAccuracy", "BinaryCrossentropy", "CategoricalAccuracy", "F1Score", "FBetaScore",
    "Mean", "MeanAbsoluteError", "MeanMetricWrapper", "MeanSquaredError", "Precision", "Recall",
    "RootMeanSquaredError", "SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Sum",
    "TopKCategoricalAccuracy",
})
SCHEDULE_CLASSES = frozenset({"CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay",
                              "PiecewiseConstantDecay", "PolynomialDecay"})
# Keras 3's own serialization records: tensors in inbound nodes, tuples, dtype policies, shapes.
KERAS3_RECORDS = frozenset({"__keras_tensor__", "__tuple__", "DTypePolicy", "FloatDTypePolicy", "TensorShape"})
# What tf_keras writes into a SavedModel's metadata beside each config: the specs of its inputs.
SPEC_RECORDS = frozenset({"InputSpec", "TypeSpec"})
_TYPE_SPECS = frozenset({"tf.TensorSpec", "tf.RaggedTensorSpec", "tf.SparseTensorSpec"})
ALLOWED_CLASSES = (TFJS_LAYER_CLASSES | INITIALIZER_CLASSES | REGULARIZER_CLASSES | CONSTRAINT_CLASSES
                   | OPTIMIZER_CLASSES | LOSS_CLASSES | METRIC_CLASSES | SCHEDULE_CLASSES | KERAS3_RECORDS
                   | SPEC_RECORDS)
# Classes that exist to carry Python code.
CODE_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__", "__function__"})
# Keras 3 names a built-in function (an activation, a loss) as {"class_name": "function", "config": "relu"}.
_FUNCTION_MODULES = frozenset({"keras.activations", "keras.losses", "keras.metrics", "tf_keras.activations",
                               "tf_keras.losses", "tf_keras.metrics"})
_KERAS_MODULE = re.compile(r"(tf_)?keras(\.[A-Za-z_][A-Za-z0-9_]*)*")
# Keras internals that a config could name as a "function" to call: never a model's business.
_FORBIDDEN_MODULE_PARTS = frozenset({"saving", "utils", "backend", "ops", "export", "legacy", "callbacks",
                                     "applications", "datasets", "distribution", "random"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# tf_keras registers its optimizers as "Custom>Adam"; Keras 3 objects as "keras>Name".
_REGISTRATION_PREFIXES = ("Custom>", "keras>")

MAX_DEPTH = 200
MAX_NODES = 2_000_000
# Keys under which Keras stores a serialized function (Lambda and its output shape).
_CODE_KEYS = frozenset({"function_type", "output_shape_type"})
_LAYER_KEYS = frozenset({"layers", "layer", "cell", "cells", "forward_layer", "backward_layer"})

REBUILD_HINT = ("Rebuild it with standard Keras layers (Dense, Conv2D, Dropout, ...): Lambda layers, TensorFlow "
                "operations applied to Keras tensors and custom layer classes do not run in the browser.")


def is_allowed_class(name: str) -> bool:
    """Whether ``name`` (possibly registered as "Custom>Adam" or "keras>Dense") is an accepted Keras class."""
    for prefix in _REGISTRATION_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name in ALLOWED_CLASSES


def _module_problem(module: Any) -> str | None:
    if module is None:
        return None
    if not isinstance(module, str) or not _KERAS_MODULE.fullmatch(module):
        return f"refers to the Python module {str(module)[:80]!r}"
    parts = set(module.split("."))
    if parts & _FORBIDDEN_MODULE_PARTS:
        return f"refers to Keras's internal module {module!r}"
    return None


def _walk(document: Any) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every dict of ``document`` with its path and whether it sits where a layer goes (depth-first, iterative).

    The inside of a code-carrying object is not visited: the object is refused as a whole.
    """
    stack: list[tuple[str, Any, bool, int]] = [("", document, False, 0)]
    nodes = 0
    while stack:
        path, value, layer_slot, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            raise _TooDeepError(path)
        if isinstance(value, dict):
            yield path, value, layer_slot
            if value.get("class_name") in CODE_CLASSES:
                continue  # reported as a whole; what it carries is its own business
            for key, item in reversed(list(value.items())):
                stack.append((f"{path}.{key}" if path else str(key), item, key in _LAYER_KEYS, depth + 1))
        elif isinstance(value, list):
            for index in range(len(value) - 1, -1, -1):
                stack.append((f"{path}[{index}]", value[index], layer_slot, depth + 1))


class _TooDeepError(Exception):
    def __init__(self, path: str):
        self.path = path


def _where(path: str, node: dict[str, Any]) -> str:
    config = node.get("config")
    name = node.get("name") or (config.get("name") if isinstance(config, dict) else None)
    shown = f"layer {name[:80]!r}, " if isinstance(name, str) else ""
    return f"{shown}at {path or 'the top'}"


def _node_findings(path: str, node: dict[str, Any], layer_slot: bool) -> list[tuple[str, str]]:
    """(category, description) of what is wrong with one object; a code class is reported once, as itself."""
    where = _where(path, node)
    cls = node.get("class_name")
    if isinstance(cls, str) and cls in CODE_CLASSES:
        return [("untrainable" if layer_slot else "code", f"{cls} ({where}), which carries Python code")]
    found: list[tuple[str, str]] = []
    for key, value in node.items():
        if key in _CODE_KEYS or (key.endswith("_fn") and value not in (None, "", [], {})):
            found.append(("code", f"a serialized Python function in {key!r} ({where})"))
        elif key == "function" and not isinstance(value, str | type(None)):
            found.append(("code", f"a serialized Python function in 'function' ({where})"))
        elif key == "module" and (problem := _module_problem(value)):
            found.append(("foreign", f"{problem} ({where})"))
        elif key == "registered_name" and value is not None and not (
                isinstance(value, str) and (is_allowed_class(value) or value == "function")):
            found.append(("foreign", f"a custom registered object {str(value)[:80]!r} ({where})"))
    if cls is None:
        return found
    if not isinstance(cls, str):
        found.append(("unknown", f"a class name that is not text ({where})"))
    elif cls == "TypeSpec" and node.get("type_spec") not in _TYPE_SPECS:
        found.append(("foreign", f"a TypeSpec of {str(node.get('type_spec'))[:80]!r} ({where})"))
    elif cls == "function":
        config = node.get("config")
        if not (isinstance(config, str) and _IDENTIFIER.fullmatch(config)
                and node.get("module", "keras.losses") in _FUNCTION_MODULES):
            found.append(("foreign", f"a function outside Keras's activations, losses and metrics ({where})"))
    elif not is_allowed_class(cls):
        found.append(("untrainable" if layer_slot else "unknown", f"{cls[:80]} ({where})"))
    return found


_HEADINGS = {
    "code": "The model carries Python code, which this server never runs (nor does the browser): ",
    "foreign": "The model refers to code outside Keras, which is refused (only Keras's own, built-in objects are "
               "accepted): ",
    "untrainable": "The model uses layers TF.js cannot train: ",
    "unknown": "The model uses objects that are not built-in Keras layers, initializers, regularizers, constraints, "
               "optimizers, losses or metrics: ",
}


def config_problems(document: Any) -> list[str]:
    """Every reason (empty if none) why a Keras or TF.js model ``document`` must not be loaded.

    ``document`` is a model config, a TF.js ``model.json``, a ``.keras`` ``config.json``, or
    any JSON holding them (e.g. ``{"model_config": ..., "training_config": ...}``). Nothing is
    imported or built. Each problem names the objects at fault and where they are.
    """
    found: dict[str, list[str]] = {category: [] for category in _HEADINGS}
    try:
        for path, node, layer_slot in _walk(document):
            for category, description in _node_findings(path, node, layer_slot):
                found[category].append(description)
    except _TooDeepError as exc:
        return [f"The model's configuration is nested too deeply or is too large (at {exc.path or 'the top'}): "
                "a real Keras model is not. Save the model again with model.save(...)."]
    problems = [_HEADINGS[category] + _listed(items) + "." for category, items in found.items() if items]
    if problems:
        problems[-1] += " " + REBUILD_HINT
    return problems


def _listed(items: list[str], limit: int = 6) -> str:
    unique = list(dict.fromkeys(items))
    more = f" and {len(unique) - limit} more" if len(unique) > limit else ""
    return ", ".join(unique[:limit]) + more

