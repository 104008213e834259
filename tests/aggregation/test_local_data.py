"""A Python participant's local data: CSV columns, image folders, splits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aggregation.local_data import DataError, images_from_folder, split, tabular_from_csv

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
    parts = split(x, y, 2, non_iid=True)
    assert [p[1].tolist() for p in parts] == [[0, 0, 0], [1, 1, 1]]
    iid = split(x, y, 3, seed=1)
    assert sorted(np.concatenate([p[1] for p in iid]).tolist()) == sorted(y.tolist())
    with pytest.raises(DataError, match="Cannot split 6 samples among 7"):
        split(x, y, 7)
