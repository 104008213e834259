"""Output shapes followed through a model's configuration agree with Keras's own, and the fit check uses them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from disco_client.model_allowlist import config_problems
from tasks.model_files.shapes import ShapeUnknownError, model_output_shapes
from tasks.model_fit import check_model_fits_task
from tasks.tfjs_format import parse_layers_model
from tests import model_files as mf

PREDEFINED = ["mnist", "cifar10", "titanic", "simple_face", "lus_covid", "wikitext"]


def _keras() -> Any:
    from disco_client.keras_env import tf_keras

    return tf_keras()


def _extra_model(kind: str) -> Any:
    keras = _keras()
    layers = keras.layers
    if kind == "keras_mobilenet":  # ends Conv2D -> Reshape -> Activation, not Dense
        return keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10)
    if kind == "recurrent":
        inputs = keras.Input(shape=(7, 5))
        x = layers.Bidirectional(layers.LSTM(6, return_sequences=True))(inputs)
        x = layers.TimeDistributed(layers.Dense(4))(x)
        x = layers.GRU(3)(x)
        return keras.Model(inputs, layers.Dense(2, activation="softmax")(x))
    if kind == "pooling":
        return keras.Sequential([keras.Input(shape=(17, 13, 2)), layers.ZeroPadding2D(((1, 2), (0, 1))),
                                 layers.Conv2D(4, 3, strides=2, padding="same"), layers.Cropping2D(1),
                                 layers.UpSampling2D(), layers.AveragePooling2D(3, strides=2),
                                 layers.SeparableConv2D(5, 2, dilation_rate=1), layers.GlobalMaxPooling2D(),
                                 layers.RepeatVector(3), layers.Permute((2, 1)), layers.Flatten(),
                                 layers.Dense(7)])
    if kind == "embedding":
        inputs = keras.Input(shape=(9,))
        x = layers.Embedding(20, 4)(inputs)
        y = layers.Conv1D(4, 3, padding="same")(x)
        z = layers.Dot(axes=(2, 2))([x, y])
        x = layers.Concatenate()([layers.GlobalAveragePooling1D()(z), layers.Flatten()(layers.MaxPooling1D(3)(x))])
        return keras.Model(inputs, layers.Dense(3)(layers.Reshape((-1,))(x)))
    raise ValueError(kind)


def _topology(model: Any) -> dict[str, Any]:
    return json.loads(model.to_json())


@pytest.mark.parametrize("task_id", PREDEFINED)
def test_predefined_models_follow_to_keras_shapes_and_pass_the_allow_list(task_id):
    from tasks.providers import get_provider

    model = get_provider(task_id).get_model()
    topology = _topology(model)
    assert model_output_shapes(topology) == [list(model.output_shape)]
    assert config_problems(topology) == []


@pytest.mark.parametrize("kind", ["keras_mobilenet", "recurrent", "pooling", "embedding", "dense", "conv",
                                  "multi_input"])
def test_other_architectures_follow_to_keras_shapes(kind):
    model = mf.keras2_model(kind) if kind in mf.KINDS else _extra_model(kind)
    assert model_output_shapes(_topology(model)) == [list(model.output_shape)]


def test_keras_own_mobilenet_fits_a_ten_label_image_task():
    artifacts = parse_layers_model(mf.tfjs_files(_extra_model("keras_mobilenet"))["model.json"], {},
                                   require_weights=False)
    task = {"data_type": "image", "image_height": 32, "image_width": 32, "image_channels": 3,
            "labels": [str(i) for i in range(10)]}
    assert check_model_fits_task(artifacts, task) == []
    (problem,) = check_model_fits_task(artifacts, {**task, "labels": ["a", "b", "c"]})
    assert "(layer 'predictions', shape [None, 10]) has 10 units, but the task has 3 labels" in problem


def test_a_layer_that_cannot_be_followed_is_named():
    topology = _topology(mf.keras2_model("dense"))
    topology["config"]["layers"][1]["class_name"] = "Mystery"
    with pytest.raises(ShapeUnknownError, match="layer 'dense.*Mystery is not followed"):
        model_output_shapes(topology)
