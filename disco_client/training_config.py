"""Compile a ``tf_keras`` model as the training page compiles its TF.js twin.

The converter leaves the Keras author's ``compile()`` in model.json's ``modelTopology.training_config``;
TF.js ignores it when loading, so the page compiles from it itself (``static/disco/trainer.js``
``compileFromTrainingConfig``, and ``ensureCompiled`` when there is none it understands). The Python
participant, the Keras 3 import and anything else that compiles for training follow the same rules
through this module, so one task trains with the same optimizer in a browser and in Python:

- the loss is one of the names in ``LOSSES`` (any case), else the configuration is not used;
- the optimizer is SGD (with its momentum when positive), RMSprop, or Adam for any other name, with
  the learning rate when it is a positive number, else 0.01 for SGD and 0.001 for Adam and RMSprop;
- accuracy is measured unless the loss is a mean error;
- without a usable configuration: Adam 0.001 with sparse categorical cross-entropy for text,
  binary cross-entropy for one output unit, categorical cross-entropy otherwise.

``training_settings`` and ``default_settings`` are pure (tests/vectors/training_config.json holds the
cases both twins are checked on); only ``compile_arguments`` imports ``tf_keras``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Keras loss names the page compiles from, and the canonical Keras name of each.
LOSSES = {
    "binary_crossentropy": "binary_crossentropy",
    "categorical_crossentropy": "categorical_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "mean_squared_error": "mean_squared_error", "mse": "mean_squared_error",
    "mean_absolute_error": "mean_absolute_error", "mae": "mean_absolute_error",
}
DEFAULT_LEARNING_RATES = {"Adam": 0.001, "SGD": 0.01, "RMSprop": 0.001}


@dataclass(frozen=True)
class TrainingSettings:
    """What a model is compiled with: ``optimizer`` is ``Adam``, ``SGD`` or ``RMSprop`` (tf_keras names)."""

    optimizer: str
    learning_rate: float
    loss: str
    momentum: float = 0.0
    metrics: tuple[str, ...] = ("accuracy",)


def _positive(value: Any) -> float | None:
    """``value`` as a positive float (as JavaScript's ``Number(value) > 0``), else None.

    Booleans and learning-rate schedules (dicts) are not rates.
    """
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def optimizer_settings(optimizer_config: Any) -> tuple[str, float, float]:
    """(class name, learning rate, momentum) from a serialized Keras optimizer ``{"class_name", "config"}``.

    A name of its own (``class_name``, else ``config.name``; a ``Custom>`` prefix dropped) other than SGD
    or RMSprop means Adam; momentum is kept for SGD only, as the page's ``tf.train.momentum``.
    """
    optimizer = optimizer_config if isinstance(optimizer_config, dict) else {}
    config = optimizer.get("config") if isinstance(optimizer.get("config"), dict) else {}
    name = str(optimizer.get("class_name") or config.get("name") or "Adam").removeprefix("Custom>").lower()
    class_name = {"sgd": "SGD", "rmsprop": "RMSprop"}.get(name, "Adam")
    rate = _positive(config.get("learning_rate")) or DEFAULT_LEARNING_RATES[class_name]
    momentum = (_positive(config.get("momentum")) or 0.0) if class_name == "SGD" else 0.0
    return class_name, rate, momentum


def training_settings(training_config: Any) -> TrainingSettings | None:
    """The settings ``compileFromTrainingConfig`` uses for model.json's ``training_config``, or None when
    it has no loss the page knows (the page then compiles with ``default_settings``)."""
    if not isinstance(training_config, dict):
        return None
    loss = training_config.get("loss")
    if isinstance(loss, list) and len(loss) == 1:  # one output's loss in a list: JavaScript's String() unwraps it
        loss = loss[0]
    loss = LOSSES.get(loss.lower()) if isinstance(loss, str) else None
    if loss is None:
        return None
    class_name, rate, momentum = optimizer_settings(training_config.get("optimizer_config"))
    metrics = () if loss.startswith("mean") else ("accuracy",)
    return TrainingSettings(class_name, rate, loss, momentum, metrics)


def default_settings(output_units: int, data_type: str | None = None) -> TrainingSettings:
    """What ``ensureCompiled`` compiles a model with when its model.json says nothing usable."""
    if data_type == "text":
        loss = "sparse_categorical_crossentropy"
    elif output_units == 1:
        loss = "binary_crossentropy"
    else:
        loss = "categorical_crossentropy"
    return TrainingSettings("Adam", DEFAULT_LEARNING_RATES["Adam"], loss)


def settings_for(training_config: Any, output_units: int, data_type: str | None = None) -> TrainingSettings:
    """The author's settings when the page can use them, else the page's defaults for the task."""
    return training_settings(training_config) or default_settings(output_units, data_type)


def compile_arguments(settings: TrainingSettings) -> dict[str, Any]:
    """``tf_keras`` ``compile()`` keyword arguments for ``settings`` (a fresh optimizer each call)."""
    from .keras_env import tf_keras

    optimizers = tf_keras().optimizers
    if settings.optimizer == "SGD":
        optimizer = optimizers.SGD(learning_rate=settings.learning_rate, momentum=settings.momentum)
    else:
        optimizer = getattr(optimizers, settings.optimizer)(learning_rate=settings.learning_rate)
    return {"optimizer": optimizer, "loss": settings.loss, "metrics": list(settings.metrics)}


def compile_for_training(model: Any, training_config: Any, data_type: str | None = None) -> TrainingSettings:
    """Compile ``model`` (tf_keras) as the training page compiles the same model.json; return the settings."""
    shape = model.output_shape
    if isinstance(shape, list):  # several outputs: the page looks at the first
        shape = shape[0]
    settings = settings_for(training_config, int(shape[-1]), data_type)
    model.compile(**compile_arguments(settings))
    return settings
