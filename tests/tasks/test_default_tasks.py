"""The six predefined task providers: valid specs, models that match them, and TF.js conversion."""

from __future__ import annotations

import importlib
import math
import os
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from disco_client.tokenizers import ByteTokenizer, get_tokenizer
from tasks.choices import DataType
from tasks.conversion import keras_model_to_tfjs
from tasks.providers import TaskProvider, default_providers
from tasks.spec import TaskSpec
from tasks.validation import validate_task_fields

# tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports IPython whenever
# sys.stdout is not the console (as under pytest's capture); the variable turns the banner off.
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

TASK_IDS = ["cifar10", "lus_covid", "mnist", "simple_face", "titanic", "wikitext"]
TITLES = {
    "mnist": "Handwritten Digit Recognition",
    "cifar10": "CIFAR10",
    "titanic": "Titanic Prediction",
    "simple_face": "Simple Face",
    "lus_covid": "Lung Ultrasound Image Classification",
    "wikitext": "GPT Language Modeling",
}


def _module(task_id: str) -> ModuleType:
    return importlib.import_module(f"tasks.default_tasks.{task_id}")


@pytest.fixture(scope="module", params=TASK_IDS)
def built(request: pytest.FixtureRequest) -> tuple[TaskSpec, Any, Any]:
    """(spec, compiled model, TF.js artifacts) of one task, built once per module."""
    provider = _module(request.param).provider
    model = provider.get_model()
    return provider.get_task(), model, keras_model_to_tfjs(model)


def test_default_providers_are_exactly_the_six_tasks() -> None:
    providers = default_providers()
    assert sorted(p.get_task().id for p in providers) == TASK_IDS
    assert all(isinstance(p, TaskProvider) for p in providers)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_spec_is_valid_and_described(task_id: str) -> None:
    spec = _module(task_id).provider.get_task()
    assert spec.id == task_id
    assert spec.title == TITLES[task_id]
    assert validate_task_fields(spec.as_fields()) == {}
    assert "\n" not in spec.summary_preview
    for text in (spec.summary_overview, spec.model_description, spec.data_format, spec.sample_dataset_instructions):
        assert len(text) > 40
    assert spec.epochs % spec.round_duration == 0


def test_spec_settings_match_reference() -> None:
    mnist = _module("mnist").provider.get_task()
    assert (mnist.scheme, mnist.aggregator, mnist.min_participants) == ("decentralized", "secure", 3)
    assert mnist.labels == [str(d) for d in range(10)] and mnist.image_channels == 3
    cifar = _module("cifar10").provider.get_task()
    assert (cifar.clipping_radius, cifar.noise_scale, cifar.min_participants) == (20, 1, 3)
    assert cifar.labels[0] == "airplane" and cifar.labels[-1] == "truck" and len(cifar.labels) == 10
    titanic = _module("titanic").provider.get_task()
    assert titanic.input_columns == ["Age", "SibSp", "Parch", "Fare", "Pclass"]
    assert titanic.output_columns == ["Survived"] and titanic.preprocessing == ["sanitize"]
    assert {c["columnName"] for c in titanic.data_example} >= set(titanic.input_columns + titanic.output_columns)
    face = _module("simple_face").provider.get_task()
    assert (face.round_duration, face.epochs, face.batch_size, face.labels) == (1, 50, 10, ["child", "adult"])
    wiki = _module("wikitext").provider.get_task()
    assert (wiki.data_type, wiki.tokenizer, wiki.max_sequence_length) == ("text", "bytes", 128)
    assert (wiki.epochs, wiki.round_duration, wiki.batch_size, wiki.validation_split) == (6, 2, 1, 0.1)


def test_model_is_compiled(built: tuple[TaskSpec, Any, Any]) -> None:
    _, model, _ = built
    assert model.optimizer is not None
    assert model.loss


def test_model_input_matches_spec(built: tuple[TaskSpec, Any, Any]) -> None:
    spec, model, _ = built
    shapes = [tuple(t.shape) for t in model.inputs]
    if spec.data_type == DataType.IMAGE:
        assert shapes == [(None, spec.image_height, spec.image_width, spec.image_channels)]
    elif spec.data_type == DataType.TABULAR:
        assert shapes == [(None, len(spec.input_columns))]
    else:
        length = spec.max_sequence_length
        assert [t.name.split(":")[0] for t in model.inputs] == ["tokens", "positions", "causal_mask"]
        assert shapes == [(None, length), (None, length), (None, length, length)]
        assert [t.dtype.name for t in model.inputs] == ["int32", "int32", "float32"]


def test_model_output_matches_spec(built: tuple[TaskSpec, Any, Any]) -> None:
    spec, model, _ = built
    units = model.outputs[0].shape[-1]
    if spec.data_type == DataType.IMAGE:
        assert units == len(spec.labels)
    elif spec.data_type == DataType.TABULAR:
        assert units == len(spec.output_columns) == 1
    else:
        vocab = get_tokenizer(spec.tokenizer).vocab_size
        assert tuple(model.outputs[0].shape) == (None, spec.max_sequence_length, vocab)


def test_model_converts_to_tfjs_layers_model(built: tuple[TaskSpec, Any, Any]) -> None:
    _, model, artifacts = built
    assert artifacts.model_json["format"] == "layers-model"
    assert artifacts.parameter_count == model.count_params()
    assert artifacts.total_bytes >= 4 * model.count_params()
    assert [s[1:] for s in artifacts.input_shapes()] == [list(t.shape[1:]) for t in model.inputs]


def test_image_models_are_flat() -> None:
    """MobileNet bases are built into one functional model, not nested as a sub-model (TF.js reads it flat)."""
    keras_model_cls = _keras_model_cls()
    for task_id in ("cifar10", "simple_face"):
        model = _module(task_id).provider.get_model()
        assert not any(isinstance(layer, keras_model_cls) for layer in model.layers), task_id


def _keras_model_cls() -> type:
    from disco_client.keras_env import tf_keras

    return tf_keras().Model


# --- wikitext: tokenizer and GPT helpers ---------------------------------------------------


def test_byte_tokenizer_round_trips_utf8() -> None:
    tok = get_tokenizer("bytes")
    assert isinstance(tok, ByteTokenizer) and tok.vocab_size == 257 and tok.pad_id == 256
    text = "héllo ✓ wörld 日本"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode([tok.pad_id, *ids, tok.pad_id]) == text
    assert tok.decode(ids[:2]) == "h\ufffd"  # a cut multi-byte character decodes with a replacement
    with pytest.raises(KeyError):
        get_tokenizer("gpt2")


def test_left_pad_truncates_from_the_left_and_pads() -> None:
    tok = ByteTokenizer()
    assert tok.left_pad([1, 2, 3], 5) == [256, 256, 1, 2, 3]
    assert tok.left_pad([1, 2, 3, 4, 5, 6], 4) == [3, 4, 5, 6]
    assert tok.left_pad([1, 2], 2) == [1, 2]
    assert tok.left_pad([], 3) == [256, 256, 256]
    assert tok.left_pad([1, 2], 0) == []


def test_positions_and_causal_mask() -> None:
    wikitext = _module("wikitext")
    assert wikitext.positions(4).tolist() == [0, 1, 2, 3]
    assert wikitext.positions().dtype == np.int32
    mask = wikitext.causal_mask(128)
    assert mask.shape == (128, 128) and mask.dtype == np.float32
    assert np.all(np.tril(mask) == 0)
    assert np.all(mask[np.triu_indices(128, k=1)] == -1e9)
    assert wikitext.causal_mask(3).tolist() == [[0, -1e9, -1e9], [0, 0, -1e9], [0, 0, 0]]


@pytest.fixture(scope="module")
def gpt() -> Any:
    return _module("wikitext").provider.get_model()


def _gpt_inputs(text: str, length: int = 128) -> tuple[dict[str, np.ndarray], np.ndarray]:
    wikitext = _module("wikitext")
    tok = get_tokenizer("bytes")
    window = tok.left_pad(tok.encode(text), length + 1)
    inputs = {
        "tokens": np.array([window[:-1]], dtype=np.int32),
        "positions": wikitext.positions(length)[None],
        "causal_mask": wikitext.causal_mask(length)[None],
    }
    return inputs, np.array([window[1:]], dtype=np.int32)[..., None]


def test_gpt_predicts_a_distribution_per_position(gpt: Any) -> None:
    inputs, _ = _gpt_inputs("The quick brown fox jumps over the lazy dog. héllo ✓")
    probs = gpt.predict(inputs, verbose=0)
    assert probs.shape == (1, 128, 257)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)


def test_gpt_is_causal(gpt: Any) -> None:
    """Changing the last token leaves the predictions at earlier positions unchanged."""
    inputs, _ = _gpt_inputs("abcdefgh" * 20)
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["tokens"][0, -1] = (changed["tokens"][0, -1] + 1) % 256
    before, after = gpt.predict(inputs, verbose=0), gpt.predict(changed, verbose=0)
    np.testing.assert_allclose(before[0, :-1], after[0, :-1], atol=1e-5)
    assert not np.allclose(before[0, -1], after[0, -1])


def test_gpt_trains_on_next_token_targets(gpt: Any) -> None:
    inputs, targets = _gpt_inputs("to be or not to be, " * 10)
    loss = gpt.evaluate(inputs, targets, verbose=0, return_dict=True)["loss"]
    assert math.isclose(loss, math.log(257), rel_tol=0.2)  # about uniform at random initialisation
    history = gpt.fit(inputs, targets, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
