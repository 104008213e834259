"""The Python participant compiles a task's model as the training page does (disco_client/training_config.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from disco_client.keras import KerasFederatedClient
from disco_client.training_config import (
    TrainingSettings,
    compile_arguments,
    default_settings,
    settings_for,
    training_settings,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "training_config.json").read_text())


def _assert_settings(settings: TrainingSettings | None, expected: dict[str, Any] | None) -> None:
    if expected is None:
        assert settings is None
        return
    assert settings is not None
    assert settings.optimizer == expected["optimizer"]
    assert settings.learning_rate == pytest.approx(expected["learning_rate"])
    assert settings.momentum == pytest.approx(expected["momentum"])
    assert settings.loss == expected["loss"]
    assert list(settings.metrics) == expected["metrics"]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_training_configs_give_the_settings_the_page_compiles(case):
    _assert_settings(training_settings(case["training_config"]), case["keras"])


@pytest.mark.parametrize("case", VECTORS["defaults"], ids=lambda c: c["name"])
def test_without_a_usable_config_the_page_defaults_apply(case):
    _assert_settings(default_settings(case["outputUnits"], case["dataType"]), case["keras"])
    # a configuration the page does not understand falls back the same way
    _assert_settings(settings_for({"loss": "my_custom_loss"}, case["outputUnits"], case["dataType"]), case["keras"])
    _assert_settings(settings_for(None, case["outputUnits"], case["dataType"]), case["keras"])


_TFJS_OPTIMIZERS = {"Adam": "Adam", "SGD": "SGD", "Momentum": "SGD", "RMSProp": "RMSprop"}
_TFJS_LOSSES = {"binaryCrossentropy": "binary_crossentropy", "categoricalCrossentropy": "categorical_crossentropy",
                "sparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
                "meanSquaredError": "mean_squared_error", "meanAbsoluteError": "mean_absolute_error"}


@pytest.mark.parametrize("case", VECTORS["cases"] + VECTORS["defaults"], ids=lambda c: c["name"])
def test_the_page_and_the_participant_expect_the_same_training(case):
    """Each vector's TF.js expectation (checked by tests/js/trainer.test.mjs) and tf_keras one say the same."""
    page, python = case["compiled"], case["keras"]
    if page is None:
        assert python is None
        return
    assert _TFJS_OPTIMIZERS[page["optimizer"]] == python["optimizer"]
    assert (page["optimizer"] == "Momentum") == (python["momentum"] > 0)
    assert page["learningRate"] == pytest.approx(python["learning_rate"])
    assert page.get("momentum", 0) == pytest.approx(python["momentum"])
    assert _TFJS_LOSSES[page["loss"]] == python["loss"]


def _optimizer(training_config: dict[str, Any], units: int = 1) -> tuple[Any, Any]:
    arguments = compile_arguments(settings_for(training_config, units))
    return arguments["optimizer"], arguments["loss"]


def test_sgd_with_momentum_becomes_a_tf_keras_sgd_with_those_values():
    optimizer, loss = _optimizer({"loss": "categorical_crossentropy", "optimizer_config": {
        "class_name": "SGD", "config": {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}}}, units=3)
    config = optimizer.get_config()
    assert type(optimizer).__name__ == "SGD"
    assert config["learning_rate"] == pytest.approx(0.05)
    assert config["momentum"] == pytest.approx(0.9)
    assert config["nesterov"] is False  # TF.js's momentum optimizer has no Nesterov: the page trains without it
    assert loss == "categorical_crossentropy"


def test_rmsprop_keeps_its_rate_and_drops_momentum():
    optimizer, loss = _optimizer({"loss": "mse", "optimizer_config": {
        "class_name": "RMSprop", "config": {"learning_rate": 0.01, "momentum": 0.5}}})
    assert type(optimizer).__name__ == "RMSprop"
    assert optimizer.get_config()["learning_rate"] == pytest.approx(0.01)
    assert optimizer.get_config()["momentum"] == 0.0
    assert loss == "mean_squared_error"


def test_no_config_is_adam_at_the_page_rate_with_the_loss_the_output_implies():
    optimizer, loss = _optimizer({}, units=10)
    assert type(optimizer).__name__ == "Adam"
    assert optimizer.get_config()["learning_rate"] == pytest.approx(0.001)
    assert loss == "categorical_crossentropy"


# --- End to end: a served model.json compiled with SGD(0.05) trains as plain SGD(0.05) --------------------

class _Served(KerasFederatedClient):
    """A client whose server is a dictionary of paths."""

    files: dict[str, bytes]

    def _get(self, path: str) -> bytes:
        return self.files[path]


def _linear_model(optimizer: Any) -> Any:
    from disco_client.keras_env import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.layers.Input(shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.fixture(scope="module")
def sgd_task():
    """A linear model its author compiled with SGD(0.05), as the server serves it, and data to train on."""
    from disco_client.keras_env import tf_keras
    from tasks.conversion import keras_model_to_tfjs

    author = _linear_model(tf_keras().optimizers.SGD(learning_rate=0.05))
    artifacts = keras_model_to_tfjs(author)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32) + 0.3).astype(np.float32)
    start = [w.copy() for w in author.get_weights()]
    return artifacts, x, y, start


def _participant(artifacts: Any) -> _Served:
    client = _Served(server="http://127.0.0.1:1", task_id="t")
    client.files = {"/tasks/t/versions/1/model.json": artifacts.model_json_bytes(),
                    **{f"/tasks/t/versions/1/{name}": data for name, data in artifacts.shards.items()}}
    client.task = {"trainingInformation": {"dataType": "tabular", "roundDuration": 1, "batchSize": 16}}
    return client


def test_the_participant_trains_one_epoch_as_plain_sgd_not_adam(sgd_task):
    from disco_client.keras_env import tf_keras

    artifacts, x, y, start = sgd_task
    optimizer_config = json.loads(artifacts.model_json_bytes())["modelTopology"]["training_config"]["optimizer_config"]
    assert optimizer_config["class_name"] == "Custom>SGD"  # as tf_keras 2.19 writes it
    client = _participant(artifacts)
    model = client.model = client.load_keras_model(1)
    assert client.compile_for_training(model) == "mean_squared_error"
    assert type(model.optimizer).__name__ == "SGD"
    for variable, value in zip(model.get_weights(), start, strict=True):
        np.testing.assert_array_equal(variable, value)
    asyncio.run(client.train_local_round(x, y, client.task["trainingInformation"]))  # one epoch, one full batch
    kernel, bias = model.get_weights()

    # By hand: one gradient step of mean squared error over the whole batch.
    w, b = start
    error = x @ w + b - y
    expected_kernel = w - 0.05 * (2 / len(x)) * x.T @ error
    expected_bias = b - 0.05 * (2 / len(x)) * error.sum(axis=0)
    np.testing.assert_allclose(kernel, expected_kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias, expected_bias, rtol=1e-5, atol=1e-6)

    # The same as plain tf_keras SGD(0.05) from the same start, and not what Adam would have done.
    keras = tf_keras()
    for optimizer, same in ((keras.optimizers.SGD(learning_rate=0.05), True),
                            (keras.optimizers.Adam(learning_rate=0.001), False)):
        plain = _linear_model(optimizer)
        plain.set_weights(start)
        plain.fit(x, y, epochs=1, batch_size=len(x), verbose=0)
        close = np.allclose(plain.get_weights()[0], kernel, rtol=1e-5, atol=1e-6)
        assert close is same, type(optimizer).__name__
