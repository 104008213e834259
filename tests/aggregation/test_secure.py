"""disco_client/secure.py: the shared vectors, exact reconstruction, the quantization bound, frames and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from disco_client.codec import CodecError, encode_weights
from disco_client.secure import (
    INT32_MAX,
    add_shares,
    decode_fixed,
    decode_mean,
    decode_u32_frame,
    encode_fixed,
    encode_u32_frame,
    fixed_point_scale,
    make_shares,
    quantization_bound,
)
from tests.vectors.make_secure_vectors import build

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "secure.json").read_text())
u32 = np.uint32


def test_the_vector_file_is_what_the_code_writes():
    assert build() == VECTORS  # regenerate with tests/vectors/make_secure_vectors.py after a deliberate change


@pytest.mark.parametrize("case", VECTORS["scales"], ids=lambda c: f"R={c['max_share_value']:g},n={c['peers']}")
def test_scale_is_the_largest_power_of_two_that_cannot_overflow(case):
    scale, limit, peers = case["scale"], case["max_share_value"], case["peers"]
    assert fixed_point_scale(limit, peers) == scale
    assert scale >= 1 and scale & (scale - 1) == 0
    assert peers * limit * scale <= INT32_MAX < peers * limit * scale * 2


@pytest.mark.parametrize("case", VECTORS["bad_scales"], ids=lambda c: c["error"])
def test_impossible_scales_are_refused_with_a_reason(case):
    with pytest.raises(ValueError, match=case["error"]):
        fixed_point_scale(case["max_share_value"], case["peers"])


@pytest.mark.parametrize("case", VECTORS["encodings"], ids=lambda c: f"R={c['max_share_value']}")
def test_encoding_clips_and_rounds_half_to_even(case):
    q = encode_fixed(np.asarray(case["x"], np.float32), case["max_share_value"], case["scale"])
    assert q.dtype == u32 and q.tolist() == case["q"]


@pytest.mark.parametrize("case", VECTORS["rounds"], ids=lambda c: c["name"])
def test_a_whole_round_reconstructs_exactly(case):
    peers, scale, limit = case["peers"], case["scale"], case["max_share_value"]
    encoded = [encode_fixed(np.asarray(u, np.float32), limit, scale) for u in case["updates"]]
    assert [q.tolist() for q in encoded] == case["encoded"]
    shares = [[np.asarray(s, u32) for s in row] for row in case["shares"]]
    for q, row in zip(encoded, shares, strict=True):
        assert add_shares(row).tolist() == q.tolist()  # shares of one update sum back to it exactly
        # the last share is the one make_shares derives from the random ones
        assert make_shares(q, peers, rng=_Replay(row[:-1]))[-1].tolist() == row[-1].tolist()
    partials = [add_shares([shares[i][j] for i in range(peers)]) for j in range(peers)]
    assert [p.tolist() for p in partials] == case["partials"]
    total = add_shares(partials)
    assert total.tolist() == case["total"] == add_shares(encoded).tolist()
    assert decode_fixed(total, scale).tolist() == case["sum"]
    assert decode_mean(total, scale, peers).tolist() == case["mean"]


class _Replay:
    """A stand-in for numpy's Generator that hands out recorded shares, in order."""

    def __init__(self, vectors):
        self.vectors = list(vectors)

    def integers(self, low, high, size, dtype):
        assert (low, high, dtype) == (0, 2**32, np.uint32)
        return self.vectors.pop(0).copy()


@pytest.mark.parametrize("peers", [3, 5, 10])
def test_secure_mean_equals_the_plain_mean_within_the_quantization_bound(peers):
    rng = np.random.default_rng(peers)
    limit, size = 10.0, 20_000
    updates = rng.normal(0, 3, size=(peers, size)).astype(np.float32)
    updates[:, :50] = rng.choice([-1, 1], size=(peers, 50)) * 25  # some beyond the range: clipped
    scale = fixed_point_scale(limit, peers)
    shares = [make_shares(encode_fixed(u, limit, scale), peers) for u in updates]  # real CSPRNG
    partials = [add_shares([shares[i][j] for i in range(peers)]) for j in range(peers)]
    mean = decode_mean(add_shares(partials), scale, peers)
    true_mean = np.clip(updates.astype(np.float64), -limit, limit).mean(axis=0)
    error = np.abs(mean.astype(np.float64) - true_mean)
    float32_rounding = np.abs(true_mean) * 2.0**-24 + 1e-45
    assert (error <= quantization_bound(scale) + float32_rounding).all()
    assert error.max() > 0  # the bound is not vacuous: quantization does show up


def test_extremes_never_overflow():
    for peers in (3, 5, 10):
        scale = fixed_point_scale(1.5, peers)
        for value in (1.5, -1.5, 1e30, -1e30):
            encoded = [encode_fixed(np.full(4, value, np.float32), 1.5, scale) for _ in range(peers)]
            total = add_shares([s for q in encoded for s in make_shares(q, peers)])
            np.testing.assert_allclose(decode_mean(total, scale, peers), np.sign(value) * 1.5,
                                       atol=quantization_bound(scale))


def test_shares_look_uniform_and_hide_the_update():
    q = np.zeros(100_000, u32)  # an all-zero update: any single share must still look random
    first, last = make_shares(q, 3)[0], make_shares(q, 2)[1]
    for share in (first, last):
        assert abs(share.astype(np.float64).mean() / 2**32 - 0.5) < 0.01
        assert len(np.unique(share)) > 99_000
    assert not np.array_equal(make_shares(q, 3)[0], make_shares(q, 3)[0])


def test_single_peer_share_is_the_encoding():
    q = encode_fixed(np.array([0.25, -0.5], np.float32), 1.0, fixed_point_scale(1.0, 1))
    assert [s.tolist() for s in make_shares(q, 1)] == [q.tolist()]


@pytest.mark.parametrize("frame", VECTORS["frames"], ids=lambda f: f["fields"]["type"] + str(len(f["vector"])))
def test_u32_frames_match_the_vectors(frame):
    encoded = encode_u32_frame(frame["fields"], np.asarray(frame["vector"], u32))
    assert encoded.hex() == frame["frame_hex"]
    header, vector = decode_u32_frame(encoded)
    assert vector.tolist() == frame["vector"]
    assert {k: header[k] for k in frame["fields"]} == frame["fields"]
    if vector.size:
        assert np.shares_memory(vector, np.frombuffer(encoded, np.uint8))  # zero copy


@pytest.mark.parametrize("bad", VECTORS["bad_frames"], ids=lambda b: b["name"])
def test_bad_u32_frames_are_refused_with_their_reason(bad):
    with pytest.raises(CodecError, match=bad["error"]):
        decode_u32_frame(bytes.fromhex(bad["frame_hex"]))


def test_frame_limits_and_wrong_inputs():
    frame = encode_u32_frame({"type": "share", "round": 1}, np.arange(10, dtype=u32))
    with pytest.raises(CodecError, match="over this task's limit of 20"):
        decode_u32_frame(frame, max_bytes=20)
    with pytest.raises(CodecError, match="holds 10 values but the model has 11"):
        decode_u32_frame(frame, expected_size=11)
    with pytest.raises(CodecError, match="Expected a uint32 frame"):
        decode_u32_frame(encode_weights({"type": "peer_update"}, [("w", np.zeros(3, np.float32))]))
    with pytest.raises(CodecError, match="set by the codec"):
        encode_u32_frame({"encoding": "x"}, np.zeros(1, u32))
    with pytest.raises(CodecError, match="uint32 vector, not float32"):
        encode_u32_frame({}, np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="NaN or infinite values \\(first at index 1\\)"):
        encode_fixed(np.array([0.0, np.nan]), 1.0, 4)
    with pytest.raises(ValueError, match="uint32 vector"):
        make_shares(np.zeros(3, np.int32), 3)
    with pytest.raises(ValueError, match="uint32 vector of 3 values"):
        add_shares([np.zeros(3, u32), np.zeros(4, u32)])
