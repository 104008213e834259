"""Each rule of tasks.validation, and that every problem is reported at once."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.validation import validate_task_fields

BASE: dict[str, Any] = {
    "id": "titanic-copy", "title": "T", "summary_preview": "p", "data_type": "tabular", "scheme": "federated",
    "epochs": 10, "round_duration": 2, "batch_size": 30, "validation_split": 0.2, "min_participants": 2,
    "input_columns": ["Age"], "output_columns": ["Survived"], "labels": [], "preprocessing": ["sanitize"],
    "clipping_radius": None, "noise_scale": None, "max_share_value": 100.0, "aggregator": "mean",
    "aggregator_params": {}, "round_deadline_seconds": 120,
    "image_height": None, "image_width": None, "image_channels": None,
    "tokenizer": "", "max_sequence_length": None,
}
IMAGE = {**BASE, "data_type": "image", "image_height": 28, "image_width": 28, "labels": ["0", "1"],
         "preprocessing": ["resize", "normalize"], "input_columns": [], "output_columns": []}
TEXT = {**BASE, "data_type": "text", "tokenizer": "bytes", "max_sequence_length": 128,
        "preprocessing": ["tokenize", "pad"], "input_columns": [], "output_columns": []}


def errors_for(**changes: Any) -> dict[str, list[str]]:
    return validate_task_fields({**BASE, **changes})


@pytest.mark.parametrize("valid", [BASE, IMAGE, TEXT])
def test_valid_tasks_have_no_errors(valid):
    assert validate_task_fields(valid) == {}


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"id": "Bad Id!"}, "id", "lower-case"),
    ({"id": ""}, "id", "lower-case"),
    ({"title": "  "}, "title", "title"),
    ({"summary_preview": ""}, "summary_preview", "preview"),
    ({"epochs": 0}, "epochs", "at least 1"),
    ({"epochs": 9, "round_duration": 2}, "round_duration", "multiple"),
    ({"round_duration": 0}, "round_duration", "at least 1"),
    ({"batch_size": 0}, "batch_size", "at least 1"),
    ({"validation_split": 0}, "validation_split", "strictly between 0 and 1"),
    ({"validation_split": 1.0}, "validation_split", "strictly between 0 and 1"),
    ({"scheme": "p2p"}, "scheme", "federated"),
    ({"data_type": "video"}, "data_type", "image"),
    ({"min_participants": 0}, "min_participants", "at least 1"),
    ({"input_columns": []}, "input_columns", "at least one input"),
    ({"output_columns": []}, "output_columns", "at least one output"),
    ({"input_columns": ["Age", "Age"]}, "input_columns", "only once"),
    ({"output_columns": ["Age"]}, "output_columns", "both input and output"),
    ({"preprocessing": ["resize"]}, "preprocessing", "Unknown preprocessing for tabular data: resize"),
    ({"clipping_radius": 1.0}, "noise_scale", "both"),
    ({"clipping_radius": -1.0, "noise_scale": 1.0}, "clipping_radius", "positive"),
    ({"clipping_radius": 1.0, "noise_scale": -1.0}, "noise_scale", "zero or a positive"),
    ({"max_share_value": 0}, "max_share_value", "positive"),
    ({"aggregator": "best"}, "aggregator", "one of"),
    ({"aggregator": "trimmed_mean", "aggregator_params": {"beta": 0.5}}, "aggregator_params", "[0, 0.5)"),
    ({"aggregator": "krum", "aggregator_params": {}}, "aggregator_params", "f, the number"),
    ({"aggregator": "krum", "aggregator_params": {"f": 1}, "min_participants": 4}, "min_participants", "2f+3 = 5"),
    ({"aggregator": "multi_krum", "aggregator_params": {"f": 0}}, "aggregator_params", "Multi-Krum needs m"),
    ({"aggregator": "krum", "aggregator_params": {"f": 1}, "min_participants": 4}, "min_participants",
     "Raise the minimum to 5, or lower f to 0"),
    ({"aggregator": "multi_krum", "aggregator_params": {"f": 0, "m": 4}, "min_participants": 3}, "aggregator_params",
     "Multi-Krum averages the m=4 best updates, but a round may close with only 3 (the minimum number of "
     "participants). Lower m to at most 3, or raise the minimum number of participants to 4."),
    ({"aggregator": "centered_clipping", "aggregator_params": {"tau": 0, "iterations": 1}}, "aggregator_params",
     "tau"),
    ({"aggregator": "mean", "aggregator_params": {"beta": 0.1}}, "aggregator_params", "unexpected: beta"),
    ({"aggregator": "secure"}, "aggregator", "decentralized"),
    ({"aggregator": "secure", "scheme": "decentralized", "min_participants": 2}, "min_participants", "at least 3"),
])
def test_each_rule_names_its_field(changes, field, words):
    errors = errors_for(**changes)
    assert field in errors, errors
    assert any(words in message for message in errors[field]), errors[field]


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"image_height": None}, "image_height", "height"),
    ({"image_width": 5000}, "image_width", "1 to 1024"),
    ({"image_channels": 2}, "image_channels", "1 (grey), 3 (RGB) or 4"),
    ({"labels": ["cat"]}, "labels", "at least two"),
    ({"labels": ["cat", "cat"]}, "labels", "only once"),
    ({"labels": ["cat", ""]}, "labels", "non-empty"),
    ({"preprocessing": ["sanitize"]}, "preprocessing", "Known steps: resize, normalize"),
])
def test_image_rules(changes, field, words):
    errors = validate_task_fields({**IMAGE, **changes})
    assert any(words in message for message in errors.get(field, [])), errors


@pytest.mark.parametrize(("changes", "field"), [
    ({"tokenizer": "gpt2"}, "tokenizer"),
    ({"max_sequence_length": 1}, "max_sequence_length"),
    ({"max_sequence_length": None}, "max_sequence_length"),
])
def test_text_rules(changes, field):
    assert field in validate_task_fields({**TEXT, **changes})


def test_every_problem_is_reported_at_once():
    errors = errors_for(title="", epochs=3, round_duration=2, validation_split=2, input_columns=[], batch_size=-1)
    assert set(errors) >= {"title", "round_duration", "validation_split", "input_columns", "batch_size"}


def test_registered_preprocessing_becomes_valid():
    from tasks.preprocessing import _registry, register_preprocessing

    try:
        register_preprocessing("image", "halve", "Divide each pixel by 2.")
        assert validate_task_fields({**IMAGE, "preprocessing": ["resize", "halve"]}) == {}
    finally:
        _registry["image"].pop("halve", None)
    with pytest.raises(ValueError, match="Unknown data type"):
        register_preprocessing("video", "x", "")
