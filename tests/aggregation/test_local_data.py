"""A Python participant's local data: CSV columns, image folders, splits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from disco_client.local_data import (
    DataError,
    images_from_folder,
    labels_of,
    parse_partition,
    partition_indices,
    split,
    tabular_from_csv,
)

TRAINING = {"inputColumns": ["a", "b"], "outputColumns": ["y"], "preprocessingFunctions": ["sanitize"]}


def test_csv_columns_are_picked_and_sanitised():
    x, y = tabular_from_csv("a,b,c,y\n1,,9,1\n2,x,9,0\n", TRAINING)
    np.testing.assert_array_equal(x, [[1, 0], [2, 0]])
    np.testing.assert_array_equal(y, [[1], [0]])
    x, _ = tabular_from_csv("a,b,y\n1,10,1\n3,30,0\n", {**TRAINING, "preprocessingFunctions": ["standardize"]})
    np.testing.assert_allclose(x, [[-1, -1], [1, 1]])


def test_a_missing_column_is_named():
    with pytest.raises(DataError, match="lacks the column\\(s\\) b; its header has a, y"):
        tabular_from_csv("a,y\n1,1\n", TRAINING)


def test_image_folder_by_label(tmp_path):
    training = {"LABEL_LIST": ["cat", "dog"], "IMAGE_H": 4, "IMAGE_W": 6, "imageChannels": 1,
                "preprocessingFunctions": ["normalize"]}
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.new("L", (10, 10), 255 if label == "dog" else 0).save(tmp_path / label / "a.png")
    x, y = images_from_folder(tmp_path, training)
    assert x.shape == (2, 4, 6, 1) and x.max() == 1.0
    np.testing.assert_array_equal(y, [0, 1])
    (tmp_path / "bird").mkdir()
    Image.new("L", (3, 3)).save(tmp_path / "bird" / "b.png")
    with pytest.raises(DataError, match="Unknown label\\(s\\) bird"):
        images_from_folder(tmp_path, training)


def test_iid_and_non_iid_splits():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([1, 0, 1, 0, 1, 0], dtype=np.float32)
    parts = split(x, y, 2, non_iid=True)  # the old option: shards:1, one label-sorted slice each
    assert sorted(p[1].tolist() for p in parts) == [[0, 0, 0], [1, 1, 1]]
    iid = split(x, y, 3, seed=1)
    assert sorted(np.concatenate([p[1] for p in iid]).tolist()) == sorted(y.tolist())
    with pytest.raises(DataError, match="Cannot split 6 samples among 7"):
        split(x, y, 7)


def ten_labels(n_per: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(10), n_per)).astype(np.float32)


def test_partition_names_are_parsed_and_bad_ones_refused():
    assert parse_partition("iid") == ("iid", 0.0)
    assert parse_partition("shards:2") == ("shards", 2.0)
    assert parse_partition("dirichlet:0.5") == ("dirichlet", 0.5)
    for bad in ("shards", "shards:0", "shards:1.5", "dirichlet:0", "dirichlet:-1", "dirichlet:x", "iid:3", "zipf"):
        with pytest.raises(DataError, match="Unknown partition"):
            parse_partition(bad)


def test_labels_of_one_hot_and_columns():
    np.testing.assert_array_equal(labels_of(np.eye(3)[[2, 0, 1]]), [2, 0, 1])
    np.testing.assert_array_equal(labels_of(np.array([[1.0], [0.0]])), [1, 0])


def test_iid_parts_are_equal_and_cover_every_sample():
    y = ten_labels()
    parts = partition_indices(y, 10, "iid", seed=3)
    assert [len(p) for p in parts] == [60] * 10
    assert sorted(np.concatenate(parts).tolist()) == list(range(600))
    # IID: every participant sees most labels
    assert min(len(np.unique(y[p])) for p in parts) >= 8


def test_two_shards_give_each_participant_at_most_two_labels():
    y = ten_labels()
    parts = partition_indices(y, 10, "shards:2", seed=0)
    assert [len(p) for p in parts] == [60] * 10
    assert sorted(np.concatenate(parts).tolist()) == list(range(600))
    assert max(len(np.unique(y[p])) for p in parts) <= 2  # shards of 30 never straddle two labels of 60
    one = partition_indices(y, 10, "shards:1", seed=0)
    assert sorted(len(np.unique(y[p])) for p in one) == [1] * 10  # the old --non-iid: one label each


def test_dirichlet_skews_labels_more_for_small_alpha():
    y = ten_labels(100)
    def labels_holding_90_percent(parts):
        shares = []
        for p in parts:
            counts = np.sort(np.bincount(y[p].astype(int), minlength=10))[::-1]
            shares.append(int(np.searchsorted(np.cumsum(counts) / counts.sum(), 0.9) + 1))
        return np.mean(shares)
    skewed = partition_indices(y, 10, "dirichlet:0.1", seed=0)
    mild = partition_indices(y, 10, "dirichlet:100", seed=0)
    for parts in (skewed, mild):
        assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
        assert all(len(p) > 0 for p in parts)
    assert labels_holding_90_percent(skewed) <= 3
    assert labels_holding_90_percent(mild) >= 8
    assert np.std([len(p) for p in mild]) < 15  # ALPHA large: near-equal sizes too


def test_splits_are_deterministic_per_seed():
    y = ten_labels()
    for partition in ("iid", "shards:2", "dirichlet:0.5"):
        first, again = partition_indices(y, 10, partition, seed=7), partition_indices(y, 10, partition, seed=7)
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        other = partition_indices(y, 10, partition, seed=8)
        assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_too_few_samples_for_the_shards_is_refused():
    with pytest.raises(DataError, match="Cannot cut 6 samples into 4 x 2 shards"):
        partition_indices(np.zeros(6), 4, "shards:2")


def test_text_is_cut_into_next_token_windows_as_the_browser_cuts_it():
    from disco_client.local_data import text_windows

    training = {"dataType": "text", "tokenizer": "bytes", "maxSequenceLength": 4}
    x, y = text_windows("abcdefghij", training)  # 10 ids: windows at 0 and 4 (5 ids each), then "ij" padded
    assert x["tokens"].tolist() == [[97, 98, 99, 100], [101, 102, 103, 104], [256, 256, 256, 105]]
    assert y[..., 0].tolist() == [[98, 99, 100, 101], [102, 103, 104, 105], [256, 256, 105, 106]]
    assert y.shape == (3, 4, 1) and y.dtype == np.float32 and x["tokens"].dtype == np.int32
    assert x["positions"].tolist() == [[0, 1, 2, 3]] * 3
    np.testing.assert_array_equal(x["causal_mask"][2], np.triu(np.full((4, 4), -1e9, dtype=np.float32), k=1))
    short_x, short_y = text_windows("ab", training)
    assert short_x["tokens"].tolist() == [[256, 256, 256, 97]] and short_y[..., 0].tolist() == [[256, 256, 97, 98]]
    with pytest.raises(DataError, match="The text is empty"):
        text_windows("", training)


def test_text_splits_iid_only():
    from disco_client.local_data import text_windows

    x, y = text_windows("abcdefghijklmnopqrstuvwxyz" * 4, {"dataType": "text", "maxSequenceLength": 8})
    parts = split(x, y, 3, seed=0)
    assert sum(len(py) for _, py in parts) == len(y)
    for px, py in parts:
        assert px["tokens"].shape == (len(py), 8) and px["causal_mask"].shape == (len(py), 8, 8)
        np.testing.assert_array_equal(px["tokens"][:, 1:], py[:, :-1, 0])  # targets are the inputs shifted
    with pytest.raises(DataError, match="Text tasks are split iid: shards:2 deals out labels"):
        split(x, y, 3, partition="shards:2")
