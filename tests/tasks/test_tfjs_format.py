"""Checks of TF.js LayersModel artifacts: good models pass, each kind of breakage is named."""

from __future__ import annotations

import json
import math

import pytest

from tasks.tfjs_format import ModelFormatError, parse_layers_model


def parts(artifacts):
    return json.loads(artifacts.model_json_bytes()), dict(artifacts.shards)


def reject(model_json: dict | bytes, shards: dict[str, bytes], **kwargs) -> str:
    raw = model_json if isinstance(model_json, bytes) else json.dumps(model_json).encode()
    with pytest.raises(ModelFormatError) as info:
        parse_layers_model(raw, shards, **kwargs)
    return str(info.value)


def test_converter_output_is_a_layers_model_whose_manifest_matches_the_shards(tiny_artifacts):
    model_json, shards = parts(tiny_artifacts)
    assert model_json["format"] == "layers-model"
    manifest = model_json["weightsManifest"]
    announced = sum(4 * math.prod(w["shape"]) for g in manifest for w in g["weights"])
    assert announced == sum(len(b) for b in shards.values())
    assert tiny_artifacts.parameter_count == 4 * 3 + 3 + 3 * 2 + 2
    assert tiny_artifacts.input_shapes() == [[None, 4]]
    again = parse_layers_model(tiny_artifacts.model_json_bytes(), shards)
    assert again.sha256() == tiny_artifacts.sha256()


def test_graph_model_is_refused_with_the_converter_command():
    message = reject({"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": []}, {})
    assert "inference" in message and "tensorflowjs_converter --input_format=keras" in message


@pytest.mark.parametrize(("raw", "words"), [
    (b"{not json", "not valid JSON (line 1"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"format": "layers-model"}).encode(), "no modelTopology"),
    (json.dumps({"format": "saved-model", "modelTopology": {}}).encode(), "only 'layers-model'"),
])
def test_unreadable_model_json_is_explained(raw, words):
    assert words in reject(raw, {})


def test_missing_shard_is_named(tiny_artifacts):
    model_json, shards = parts(tiny_artifacts)
    name = next(iter(shards))
    assert f"weight file '{name}', which was not provided" in reject(model_json, {})
    # ... unless the caller accepts an architecture-only model.json
    assert parse_layers_model(json.dumps(model_json).encode(), {}, require_weights=False).shards == {}


def test_truncated_shard_is_refused_with_byte_counts(tiny_artifacts):
    model_json, shards = parts(tiny_artifacts)
    name = next(iter(shards))
    message = reject(model_json, {name: shards[name][:-4]})
    assert "holds 88 bytes" in message and "need 92 bytes" in message


def test_shape_that_lies_about_the_bytes_is_refused(tiny_artifacts):
    model_json, shards = parts(tiny_artifacts)
    model_json["weightsManifest"][0]["weights"][0]["shape"] = [5, 3]
    assert "truncated or belong to another model" in reject(model_json, shards)


def test_unexpected_extra_file_and_unsafe_paths(tiny_artifacts):
    model_json, shards = parts(tiny_artifacts)
    assert "not named in model.json's weightsManifest: extra.bin" in reject(model_json, {**shards, "extra.bin": b"x"})
    model_json["weightsManifest"][0]["paths"] = ["../../etc/passwd"]
    assert "plain file name" in reject(model_json, shards)


def test_duplicate_weight_names_and_bad_dtypes(tiny_artifacts):
    model_json, shards = parts(tiny_artifacts)
    weights = model_json["weightsManifest"][0]["weights"]
    weights[1]["name"] = weights[0]["name"]
    assert "more than once" in reject(model_json, shards)
    model_json, shards = parts(tiny_artifacts)
    model_json["weightsManifest"][0]["weights"][0]["dtype"] = "complex64"
    assert "unsupported dtype 'complex64'" in reject(model_json, shards)
