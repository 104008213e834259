"""disco_client/codec.py: the shared vectors, zero-copy decoding, and every refusal with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from disco_client.codec import CodecError, TensorSpec, decode_weights, encode_weights
from tests.vectors.make_codec_vectors import build

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "codec.json").read_text())


def test_the_vector_file_is_what_the_codec_writes():
    assert build() == VECTORS  # regenerate with tests/vectors/make_codec_vectors.py after a format change


@pytest.mark.parametrize("vector", VECTORS["good"], ids=lambda v: v["name"])
def test_good_vectors_round_trip(vector):
    tensors = [(t["name"], np.asarray(t["values"], dtype=np.float32).reshape(t["shape"])) for t in vector["tensors"]]
    frame = encode_weights(vector["fields"], tensors, vector["encoding"])
    assert frame.hex() == vector["frame_hex"]
    message = decode_weights(bytes.fromhex(vector["frame_hex"]))
    np.testing.assert_array_equal(message.vector, np.asarray(vector["decoded"], dtype=np.float32))
    assert {k: message.header[k] for k in vector["fields"]} == vector["fields"]
    assert [list(t.shape) for t in message.tensors()] == [t["shape"] for t in vector["tensors"]]


@pytest.mark.parametrize("vector", VECTORS["bad"], ids=lambda v: v["name"])
def test_bad_vectors_are_refused_with_their_reason(vector):
    with pytest.raises(CodecError, match=vector["error"]):
        decode_weights(bytes.fromhex(vector["frame_hex"]))


def test_float32_payload_is_a_view_of_the_frame_and_aligned():
    frame = encode_weights({"type": "update"}, [("w", np.arange(1000, dtype=np.float32))])
    message = decode_weights(frame)
    assert np.shares_memory(message.vector, np.frombuffer(frame, dtype=np.uint8))
    header_len = int.from_bytes(frame[:4], "little")
    assert (4 + header_len) % 8 == 0
    assert len(frame) <= 1.01 * 4 * 1000 + 100


def test_int8_error_is_within_half_a_step_and_float16_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=5000).astype(np.float32)
    dq = decode_weights(encode_weights({}, [("x", x)], "int8")).vector
    scale = np.abs(x).max() / 127
    assert np.abs(dq - x).max() <= scale / 2 + 1e-7
    half = decode_weights(encode_weights({}, [("x", x)], "float16")).vector
    np.testing.assert_array_equal(half, x.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_updates_are_refused_naming_the_tensor(bad):
    frame = encode_weights({}, [("ok", np.zeros(3, np.float32)), ("broken", np.array([1.0, bad], np.float32))])
    with pytest.raises(CodecError, match="NaN or infinite values \\(first in tensor 'broken'\\)"):
        decode_weights(frame)


def test_tensors_must_match_the_model():
    frame = encode_weights({}, [("w", np.zeros((2, 3), np.float32))])
    with pytest.raises(CodecError, match="has shape \\[2, 3\\] but the model expects 'w' with shape \\[3, 2\\]"):
        decode_weights(frame, expected=[TensorSpec("w", (3, 2))])
    with pytest.raises(CodecError, match="has 1 tensors but the model has 2"):
        decode_weights(frame, expected=[TensorSpec("w", (2, 3)), TensorSpec("b", (3,))])
    assert decode_weights(frame, expected=[TensorSpec("w", (2, 3))]).vector.size == 6


def test_limits_and_header_rules():
    frame = encode_weights({}, [("w", np.zeros(100, np.float32))])
    with pytest.raises(CodecError, match="over this task's limit of 100"):
        decode_weights(frame, max_bytes=100)
    with pytest.raises(CodecError, match="set by the codec"):
        encode_weights({"encoding": "x"}, [])
    with pytest.raises(CodecError, match="Unknown encoding"):
        encode_weights({}, [], "bfloat16")
    with pytest.raises(CodecError, match="must be a JSON object"):
        decode_weights(b"\x02\x00\x00\x00[]")
