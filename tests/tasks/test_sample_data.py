"""Generated sample data: deterministic, learnable, and served (manifest, files, zip, 404s, safe cache)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks import sample_data, sample_views
from tasks.models import Task


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _logistic_accuracy(x: np.ndarray, y: np.ndarray, train: int) -> float:
    """Plain gradient-descent logistic regression, fitted on the first ``train`` rows, scored on the rest."""
    mean, std = x[:train].mean(0), x[:train].std(0) + 1e-9
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    for _ in range(1500):
        p = 1 / (1 + np.exp(-z[:train] @ w))
        w -= 0.2 * z[:train].T @ (p - y[:train]) / train
    return float(((z[train:] @ w > 0) == y[train:]).mean())


def test_generators_are_deterministic() -> None:
    assert sample_data.titanic_like_csv(50, seed=3) == sample_data.titanic_like_csv(50, seed=3)
    assert sample_data.titanic_like_csv(50, seed=3) != sample_data.titanic_like_csv(50, seed=4)
    assert sample_data.learnable_tabular_csv(40) == sample_data.learnable_tabular_csv(40)
    first = [sample_data.png_bytes(im) for im, _ in sample_data.digits(12, seed=7)]
    assert first == [sample_data.png_bytes(im) for im, _ in sample_data.digits(12, seed=7)]
    assert sample_data.sample_files("lus_covid") == sample_data.sample_files("lus_covid")


def test_images_have_the_requested_size_labels_and_mode() -> None:
    digits = sample_data.digits(20, size=28)
    assert [label for _, label in digits[:10]] == [str(d) for d in range(10)]
    assert all(im.size == (28, 28) and im.mode == "L" for im, _ in digits)
    assert np.asarray(digits[0][0]).max() > 200  # a bright digit on black
    shapes = sample_data.shapes(6, size=16, labels=("circle", "square", "triangle"))
    assert [label for _, label in shapes] == ["circle", "square", "triangle"] * 2
    assert all(im.size == (16, 16) and im.mode == "RGB" for im, _ in shapes)
    with pytest.raises(ValueError, match="At most 10 labels"):
        sample_data.shapes(1, labels=[str(i) for i in range(11)])


def test_shapes_are_learnable_by_nearest_centroid() -> None:
    images = sample_data.shapes(400, size=16, seed=11)
    x = np.stack([np.asarray(im.convert("L"), dtype=np.float32).ravel() for im, _ in images])
    x = (x > x.mean(axis=1, keepdims=True)).astype(np.float32)  # shape mask, whatever the colours
    y = np.array([label == "square" for _, label in images])
    c_circle, c_square = x[:300][~y[:300]].mean(0), x[:300][y[:300]].mean(0)
    predicted = np.linalg.norm(x[300:] - c_square, axis=1) < np.linalg.norm(x[300:] - c_circle, axis=1)
    assert (predicted == y[300:]).mean() > 0.9


def test_learnable_tabular_reaches_high_accuracy() -> None:
    rows = _rows(sample_data.learnable_tabular_csv(400, columns=("a", "b", "c", "d"), seed=2))
    assert list(rows[0]) == ["a", "b", "c", "d", "label"]
    x = np.array([[float(r[c]) for c in "abcd"] for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    assert 0.3 < y.mean() < 0.7
    assert _logistic_accuracy(x, y, 300) > 0.9


def test_titanic_like_has_kaggle_columns_and_learnable_survival() -> None:
    rows = _rows(sample_data.titanic_like_csv(800, seed=0))
    assert list(rows[0]) == ["PassengerId", "Survived", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket",
                             "Fare", "Cabin", "Embarked"]
    survived = np.array([int(r["Survived"]) for r in rows])
    assert 0.3 < survived.mean() < 0.5
    assert 0.1 < sum(r["Age"] == "" for r in rows) / len(rows) < 0.3  # missing ages, as on the real list
    assert {r["Pclass"] for r in rows} == {"1", "2", "3"}
    inputs = ["Age", "SibSp", "Parch", "Fare", "Pclass"]  # the titanic task's input columns
    x = np.array([[float(r[c] or 0) for c in inputs] for r in rows])
    assert _logistic_accuracy(x, survived, 600) > 0.75


def test_text_corpus_is_a_few_kilobytes_of_prose() -> None:
    text = sample_data.text_corpus()
    assert 2_000 < len(text.encode()) < 10_000
    assert text.count("\n\n") >= 5


@pytest.mark.parametrize("task_id", ["mnist", "cifar10", "simple_face", "lus_covid"])
def test_image_task_samples_fit_the_task(task_id: str) -> None:
    spec = import_module(f"tasks.default_tasks.{task_id}").provider.get_task()
    files = sample_data.sample_files(task_id)
    labels = _rows(files["labels.csv"].decode())
    assert {row["filename"] for row in labels} == set(files) - {"labels.csv"}
    assert {row["label"] for row in labels} <= set(spec.labels)
    assert len(files) <= 101
    for row in labels[:3]:
        image = Image.open(io.BytesIO(files[row["filename"]]))
        if "resize" not in spec.preprocessing:  # the task takes the images at their size
            assert image.size == (spec.image_width, spec.image_height)


# ------------------------------------------------------------------ views

@pytest.fixture
def predefined(db):
    def make(task_id: str, **overrides) -> Task:
        spec = import_module(f"tasks.default_tasks.{task_id}").provider.get_task()
        task = Task(**{**spec.as_fields(), "published": True, **overrides})
        task.save()
        return task

    return make


@pytest.mark.django_db
def test_manifest_lists_files_with_urls_and_labels(client, predefined, media_root: Path) -> None:
    predefined("lus_covid")
    response = client.get("/tasks/lus_covid/sample-data/")
    assert response.status_code == 200
    manifest = response.json()
    assert manifest["mode"] == "csv"
    assert manifest["zip"] == "/tasks/lus_covid/sample-data.zip"
    names = [f["name"] for f in manifest["files"]]
    assert "labels.csv" in names and len(names) == 41
    image = next(f for f in manifest["files"] if f["name"].endswith(".png"))
    assert image["label"] in ("COVID-Positive", "COVID-Negative")
    assert image["url"] == f"/tasks/lus_covid/sample-data/{image['name']}"
    png = client.get(image["url"])
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(b"".join(png.streaming_content))).size == (100, 100)
    assert (media_root / "samples" / "lus_covid" / f"v{sample_data.GENERATOR_VERSION}" / "manifest.json").is_file()


@pytest.mark.django_db
def test_tabular_and_text_files_and_zip(client, predefined) -> None:
    predefined("titanic")
    predefined("wikitext")
    manifest = client.get("/tasks/titanic/sample-data/").json()
    assert manifest["mode"] == "tabular"
    assert [f["name"] for f in manifest["files"]] == ["titanic_train.csv"]
    body = b"".join(client.get(manifest["files"][0]["url"]).streaming_content).decode()
    assert body == sample_data.titanic_like_csv(400, seed=5)
    text = client.get("/tasks/wikitext/sample-data/").json()
    assert text["mode"] == "text"
    response = client.get("/tasks/wikitext/sample-data.zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.namelist() == ["wikitext/lighthouse.txt"]
    assert archive.read("wikitext/lighthouse.txt").decode() == sample_data.text_corpus()


@pytest.mark.django_db
def test_404s_explain_what_is_wrong(client, predefined, make_task) -> None:
    predefined("titanic")
    make_task("tiny")
    unknown = client.get("/tasks/nope/sample-data/")
    assert unknown.status_code == 404 and "No task with id 'nope'" in unknown.json()["detail"]
    custom = client.get("/tasks/tiny/sample-data/")
    assert custom.status_code == 404 and "has no generated sample data" in custom.json()["detail"]
    assert client.get("/tasks/tiny/sample-data.zip").status_code == 404
    missing = client.get("/tasks/titanic/sample-data/..%2Fmanifest.json")
    assert missing.status_code == 404
    other = client.get("/tasks/titanic/sample-data/manifest.json")
    assert other.status_code == 404 and "no sample file 'manifest.json'" in other.json()["detail"]
    predefined("mnist", published=False)
    assert client.get("/tasks/mnist/sample-data/").status_code == 404  # unpublished: not visible


@pytest.mark.django_db
def test_cache_is_never_half_written(client, predefined, media_root: Path, monkeypatch) -> None:
    task = predefined("titanic")
    calls = []

    def failing(task_id: str) -> dict[str, bytes]:
        calls.append(task_id)
        return {"titanic_train.csv": b"a,b\n", "broken.csv": object()}  # write_bytes fails on the second file

    monkeypatch.setattr(sample_data, "sample_files", failing)
    with pytest.raises(TypeError):
        sample_views.ensure_samples(task)
    samples = media_root / "samples" / "titanic"
    assert not any(p.name.startswith("v") for p in samples.iterdir())  # no cache folder appeared
    assert not any(samples.iterdir())  # and the temporary folder is gone
    monkeypatch.undo()
    folder, manifest = sample_views.ensure_samples(task)
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    # A second call reads the cache instead of generating again.
    monkeypatch.setattr(sample_data, "sample_files", failing)
    assert sample_views.ensure_samples(task)[1] == manifest
    assert calls == ["titanic"]
