"""Bounded-memory aggregation (issue #15): the rules read blocks of coordinates and equal the in-memory rules.

The ``_reference_*`` functions are the matrix rules as they were before blocks (np.stack of all N updates):
every rule, on a matrix split into blocks that do not divide P and on stored frames of each encoding, must
give their result. ``test_peak_memory_*`` aggregate N=200 stored frames of P=1.66M in a child process
and bound its peak RSS.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aggregation.aggregators import centered_clipping, krum, mean, median, multi_krum, plain_mean, trimmed_mean
from aggregation.aggregators._checks import sample_weights
from aggregation.aggregators.source import MatrixSource, block_width, row, rows
from aggregation.frames import StoredFrames
from disco_client.codec import CodecError, TensorSpec, decode_weights, encode_weights

ROOT = Path(__file__).resolve().parents[2]


def _open(name: str):
    return open(name, "rb", buffering=0)  # noqa: SIM115 - StoredFrames closes it


# --- today's in-memory rules, verbatim, as the reference ---------------------------------------------------
def _reference_median(matrix):
    return np.median(matrix, axis=0).astype(np.float32, copy=False)


def _reference_trimmed_mean(matrix, beta):
    n = matrix.shape[0]
    k = math.floor(beta * n)
    if k == 0:
        return matrix.mean(axis=0, dtype=np.float32)
    part = np.partition(matrix, (k - 1, n - k), axis=0)
    return part[k:n - k].mean(axis=0, dtype=np.float32)


def _reference_scores(matrix, f):
    n = matrix.shape[0]
    x = matrix.astype(np.float64, copy=False)
    sq = np.einsum("ij,ij->i", x, x)
    dist = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, np.inf)
    neighbours = n - f - 2
    return np.partition(dist, neighbours - 1, axis=1)[:, :neighbours].sum(axis=1)


def _reference_krum(matrix, f):
    return matrix[int(np.argmin(_reference_scores(matrix, f)))].copy()


def _reference_multi_krum(matrix, f, m):
    best = np.argsort(_reference_scores(matrix, f), kind="stable")[:m]
    return matrix[best].mean(axis=0, dtype=np.float32)


def _reference_clipping(matrix, tau, iterations, center=None):
    v = (np.median(matrix, axis=0) if center is None else np.asarray(center)).astype(np.float32)
    for _ in range(iterations):
        diff = matrix - v
        norms = np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))
        scale = np.minimum(1.0, tau / np.maximum(norms, 1e-12)).astype(np.float32)
        v = v + (scale @ diff) / matrix.shape[0]
    return v


def _cases(n: int, rng: np.random.Generator, matrix: np.ndarray):
    """(name, blocked call on a source, reference on the matrix, exact?) for every rule."""
    f = max(0, (n - 3) // 2)
    weights = rng.integers(1, 50, size=n).astype(np.float64)
    center = matrix.mean(axis=0) + 0.1
    return [
        ("mean", lambda s: mean(s, weights), lambda: sample_weights(weights, n).astype(np.float32) @ matrix, False),
        ("plain_mean", lambda s: plain_mean(s, weights), lambda: matrix.mean(axis=0, dtype=np.float32), False),
        ("median", median, lambda: _reference_median(matrix), True),
        ("trimmed_mean", lambda s: trimmed_mean(s, beta=0.2), lambda: _reference_trimmed_mean(matrix, 0.2), True),
        ("trimmed_mean_k0", lambda s: trimmed_mean(s, beta=0.0), lambda: _reference_trimmed_mean(matrix, 0.0),
         False),
        ("krum", lambda s: krum(s, f=f), lambda: _reference_krum(matrix, f), True),
        ("multi_krum", lambda s: multi_krum(s, f=f, m=min(n, 3)), lambda: _reference_multi_krum(matrix, f, min(n, 3)),
         False),
        ("clipping", lambda s: centered_clipping(s, tau=2.0, iterations=3),
         lambda: _reference_clipping(matrix, 2.0, 3), False),
        ("clipping_center", lambda s: centered_clipping(s, tau=0.5, iterations=2, center=center),
         lambda: _reference_clipping(matrix, 0.5, 2, center), False),
    ]


def _matrix(n: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n, p)).astype(np.float32)
    matrix[: max(1, n // 5)] *= 20  # a few outliers, so the robust rules differ from the mean
    return matrix


def _check(got: np.ndarray, want: np.ndarray, exact: bool, name: str) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape, name
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=name)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("n", [3, 7, 20])
def test_every_rule_by_blocks_equals_the_in_memory_rule(n):
    # Prepare: P=1003 in blocks of 100 columns (50 or 33 once a rule's temporaries are counted): none divides P.
    rng = np.random.default_rng(n)
    matrix = _matrix(n, 1003, n)
    blocked = MatrixSource(matrix, block_columns=100)
    assert [block_width(blocked, c) for c in (1, 2, 3)] == [100, 50, 33]
    for name, call, reference, exact in _cases(n, rng, matrix):
        # Execute / Assert: in blocks, and the whole matrix (the pure-matrix API) too
        want = reference()
        _check(call(blocked), want, exact, name)
        _check(call(matrix), want, exact, name)


def test_krum_ties_break_as_before_in_blocks():
    updates = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [50.0, 50.0]], dtype=np.float32)
    source = MatrixSource(updates, block_columns=1)
    np.testing.assert_array_equal(krum(source, f=1), [1.0, 1.0])
    np.testing.assert_array_equal(multi_krum(source, f=1, m=3), [1.0, 1.0])


def _write_frames(folder: Path, matrix: np.ndarray, encoding: str, specs: list[TensorSpec]) -> list[str]:
    names = []
    for i, vector in enumerate(matrix):
        tensors, start = [], 0
        for spec in specs:
            tensors.append((spec.name, vector[start:start + spec.size].reshape(spec.shape)))
            start += spec.size
        path = folder / f"{encoding}-{i}.frame"
        path.write_bytes(encode_weights({"type": "update", "round": 1}, tensors, encoding))
        names.append(str(path))
    return names


@pytest.mark.parametrize("encoding", ["float32", "float16", "int8"])
def test_stored_frames_read_by_blocks_equal_the_decoded_frames(tmp_path, encoding):
    # Prepare: tensors of odd sizes, so float16 and int8 tensors are padded; 7 updates of P=1003
    specs = [TensorSpec("dense/kernel", (17, 29)), TensorSpec("dense/bias", (29,)), TensorSpec("out", (480,)),
             TensorSpec("scalar", ())]
    n, p = 7, sum(s.size for s in specs)
    assert p == 1003
    matrix = _matrix(n, p, 11)
    names = _write_frames(tmp_path, matrix, encoding, specs)
    decoded = np.stack([decode_weights(Path(name).read_bytes(), expected=specs).vector for name in names])
    source = StoredFrames(names, _open, expected=specs, block_bytes=4 * n * 100)
    # Execute / Assert: the blocks are the decoded values, whatever the block's bounds
    assert (source.count, source.size) == (n, p)
    np.testing.assert_array_equal(source.block(0, p), decoded)
    np.testing.assert_array_equal(source.block(440, 1001, rows=[3, 0]), decoded[[3, 0], 440:1001])
    np.testing.assert_array_equal(row(source, 5), decoded[5])
    np.testing.assert_array_equal(np.stack(list(rows(source))), decoded)
    for name, call, reference, exact in _cases(n, np.random.default_rng(1), decoded):
        _check(call(source), reference(), exact, f"{encoding} {name}")


def test_stored_frames_refuse_frames_of_another_model_or_cut_short(tmp_path):
    specs = [TensorSpec("w", (10,))]
    names = _write_frames(tmp_path, _matrix(3, 10, 1), "float32", specs)
    with pytest.raises(CodecError, match="Tensor 'w' has shape \\[10\\]"):
        StoredFrames(names, _open, expected=[TensorSpec("w", (11,))])
    Path(names[1]).write_bytes(Path(names[1]).read_bytes()[:-4])
    with pytest.raises(CodecError, match="payload has 36 bytes"):
        StoredFrames(names, _open, expected=specs)


# --- peak memory of the real aggregation, N=200 stored frames of P=1.66M ------------------------------------
N_BIG, P_BIG = 200, 1_660_000
# What the worker may add to its baseline (Python, numpy, Django and the aggregation modules imported):
# the 64 MiB block budget, the P-vector result and reading buffers, with room for the allocator. The
# stacked matrix alone would be 4 N P bytes = 1,266 MiB (Krum's float64 copy twice that again).
MAX_ABOVE_BASELINE_MIB = 200


@pytest.fixture(scope="module")
def big_frames(tmp_path_factory):
    from bench.aggregate_memory import write_frames

    folder = tmp_path_factory.mktemp("frames")
    names = write_frames(folder, N_BIG, P_BIG, seed=3)
    yield folder, names
    for name in names:
        (folder / name).unlink(missing_ok=True)


@pytest.mark.parametrize(("rule", "params"), [("median", {}), ("krum", {"f": 20})])
def test_peak_memory_of_the_aggregation_does_not_grow_with_n_times_p(big_frames, rule, params, tmp_path):
    # Prepare
    folder, names = big_frames
    head = tmp_path / "head.npy"
    # Execute: the real aggregation (stored_frames + aggregate_updates, as aggregate_round) in a child process
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "aggregate_memory.py"), "--child", str(folder), rule,
                          json.dumps(params), str(head)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # Assert: the peak stays within the stated bound above the child's own baseline
    above = (report["peak_kib"] - report["baseline_kib"]) / 1024
    assert above < MAX_ABOVE_BASELINE_MIB, report
    # ... and the result is right: on the first coordinates, the median of the frames' values; Krum returns
    # exactly one of the updates
    first = StoredFrames([str(folder / name) for name in names], _open).block(0, 2000)
    got = np.load(head)
    if rule == "median":
        np.testing.assert_array_equal(got, np.median(first, axis=0))
    else:
        assert sum(np.array_equal(got, first[i]) for i in range(N_BIG)) >= 1


@pytest.mark.parametrize(("name", "params", "reference"), [
    ("mean", {}, lambda m, w, base: sample_weights(w, len(w)).astype(np.float32) @ m),
    ("plain_mean", {}, lambda m, w, base: m.mean(axis=0, dtype=np.float32)),
    ("median", {}, lambda m, w, base: _reference_median(m)),
    ("multi_krum", {"f": 1, "m": 3}, lambda m, w, base: _reference_multi_krum(m, 1, 3)),
    ("centered_clipping", {"tau": 0.5, "iterations": 2}, lambda m, w, base: _reference_clipping(m, 0.5, 2, base)),
])
def test_the_round_aggregation_reads_stored_frames_by_blocks(tmp_path, name, params, reference):
    # Prepare: what aggregate_round does once it has the round's frames, capped weights and base model
    from aggregation.tasks import aggregate_updates

    specs = [TensorSpec("w", (1003,))]
    matrix = _matrix(7, 1003, 4)
    weights = np.arange(1.0, 8.0) / 28
    base = matrix.mean(axis=0) + 0.1
    source = StoredFrames(_write_frames(tmp_path, matrix, "float32", specs), _open, expected=specs,
                          block_bytes=4 * 7 * 100)
    # Execute
    got = aggregate_updates(name, source, weights, params, base=lambda: base)
    # Assert: the means weigh as the registry says (plain_mean ignores the weights), clipping centres on the base
    _check(got, reference(matrix, weights, base), name == "median", name)
