"""Server-side conversion of uploaded Keras 2 / Keras 3 models, and the Celery job that runs it."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from disco_site.jobs import enqueue_on_commit
from tasks.keras_import import convert_keras_source, translate_compile_config, translate_model_config
from tasks.model_files.errors import UploadError
from tasks.models import ConversionJob, ModelVersion, Task
from tasks.tasks import convert_uploaded_model
from tasks.uploads import inspect_model_upload
from tasks.versions import create_version
from tests import model_files as mf
from tests.conftest import snapshot

GOOD = [("k2", "dense", "h5"), ("k2", "conv", "keras"), ("k2", "multi_input", "saved_model"),
        ("k3", "dense", "h5"), ("k3", "conv", "keras"), ("k3", "multi_input", "keras"), ("k3", "multi_input", "h5")]


@pytest.fixture(scope="module")
def models():
    return {(which, kind): (mf.keras2_model if which == "k2" else mf.keras3_model)(kind)
            for which, kind in {(w, k) for w, k, _ in GOOD} | {("k3", "lambda")}}


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved")
    out = {}
    for which, kind, fmt in GOOD + [("k3", "lambda", "keras"), ("k3", "dense", "export")]:
        model = models.get((which, kind)) or mf.keras3_model(kind)
        save = mf.save_keras2 if which == "k2" else mf.save_keras3
        out[(which, kind, fmt)] = save(model, fmt, tmp / f"{which}-{kind}-{fmt}")
    return out


def roundtrip_predict(artifacts, inputs, tmp_path):
    """Predictions of the converted TF.js model, read back into Keras by tensorflowjs."""
    from tasks.conversion import _tensorflowjs

    (tmp_path / "model.json").write_bytes(artifacts.model_json_bytes())
    for name, data in artifacts.shards.items():
        (tmp_path / name).write_bytes(data)
    model = _tensorflowjs().converters.load_keras_model(str(tmp_path / "model.json"))
    return model.predict(inputs, verbose=0)


@pytest.mark.parametrize(("which", "kind", "fmt"), GOOD)
def test_good_keras_uploads_convert_with_the_same_weights(models, saved, tmp_path, which, kind, fmt):
    upload = inspect_model_upload(saved[(which, kind, fmt)])
    artifacts = convert_keras_source(upload.kind, upload.source_name, upload.source_bytes)
    model = models[(which, kind)]
    assert artifacts.parameter_count == model.count_params()
    text = artifacts.model_json_bytes().decode()
    # The Keras 2 form TF.js reads: no Keras 3 batch_shape / dtype policy / __keras_tensor__ left.
    assert '"batch_input_shape"' in text
    assert '"batch_shape"' not in text and "DTypePolicy" not in text and "__keras_tensor__" not in text
    inputs = mf.sample_inputs(kind)
    inputs = inputs if len(inputs) > 1 else inputs[0]
    np.testing.assert_allclose(roundtrip_predict(artifacts, inputs, tmp_path), model.predict(inputs, verbose=0),
                               atol=1e-5)


def test_an_architecture_only_model_json_gets_random_weights_once(models):
    model_json = mf.tfjs_files(mf.keras2_model("dense"))["model.json"]
    upload = inspect_model_upload({"model.json": model_json}, allow_random_init=True)
    first = convert_keras_source(upload.kind, upload.source_name, upload.source_bytes)
    assert first.parameter_count == 51 and first.shards
    assert sum(len(b) for b in first.shards.values()) == 51 * 4


def test_keras3_functional_config_is_translated_to_the_keras2_form(models):
    config = translate_model_config(models[("k3", "multi_input")].get_config())
    assert config["input_layers"] == [["numbers", 0, 0], ["flags", 0, 0]]
    by_name = {layer["name"]: layer for layer in config["layers"]}
    assert list(by_name["numbers"]["config"]["batch_input_shape"]) == [None, 4]
    concat = next(layer for layer in config["layers"] if layer["class_name"] == "Concatenate")
    assert [entry[0] for entry in concat["inbound_nodes"][0]] == [
        next(n for n, la in by_name.items() if la["class_name"] == "Dense"), "flags"]
    assert all(isinstance(layer["config"].get("dtype", "float32"), str) for layer in config["layers"])
    assert "quantization_config" not in json.dumps(config)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_a_keras3_upload_keeps_its_loss_optimizer_and_learning_rate(tmp_path, fmt):
    """What the training page compiles from (trainer.js compileFromTrainingConfig) survives the translation."""
    from tasks.keras_import import _keras3

    keras3 = _keras3()
    model = mf.keras3_model("dense", seed=4)
    model.compile(optimizer=keras3.optimizers.SGD(learning_rate=0.05, momentum=0.5),
                  loss=keras3.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    upload = inspect_model_upload(mf.save_keras3(model, fmt, tmp_path))
    artifacts = convert_keras_source(upload.kind, upload.source_name, upload.source_bytes)
    training = artifacts.model_json["modelTopology"]["training_config"]
    # The JS tests compile from this very configuration (tests/vectors/training_config.json).
    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "training_config.json").read_text())
    expected = next(c for c in vectors["cases"] if c["name"] == "keras3-sgd-momentum")["training_config"]
    assert training["loss"] == expected["loss"]
    assert training["optimizer_config"]["class_name"] == expected["optimizer_config"]["class_name"]
    for key in ("learning_rate", "momentum"):
        assert training["optimizer_config"]["config"][key] == pytest.approx(expected["optimizer_config"]["config"][key])


@pytest.mark.parametrize(("config", "expected"), [
    ({"loss": "binary_crossentropy", "optimizer": "rmsprop", "metrics": ["accuracy"]},
     ("binary_crossentropy", "RMSprop", {}, ["accuracy"])),
    ({"loss": {"module": "builtins", "class_name": "function", "config": "categorical_crossentropy"},
      "optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.002}}},  # compile(loss="...") in Keras 3
     ("categorical_crossentropy", "Adam", {"learning_rate": 0.002}, [])),
    ({"loss": {"class_name": "MeanSquaredError", "config": {"name": "mean_squared_error"}},
      "optimizer": {"class_name": "Nadam", "config": {"learning_rate": 0.01}}},
     ("mean_squared_error", "Adam", {"learning_rate": 0.01}, [])),  # TF.js pages train Adam, SGD or RMSprop
    ({"loss": {"class_name": "CategoricalCrossentropy", "config": {"name": "categorical_crossentropy"}},
      "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": {"class_name": "ExponentialDecay"}}}},
     ("categorical_crossentropy", "Adam", {}, [])),  # a schedule: the browser's default rate
])
def test_keras3_compile_configs_become_tf_keras_compile_arguments(config, expected):
    settings = translate_compile_config(config)
    loss, optimizer, options, metrics = expected
    assert settings["loss"] == loss and settings["metrics"] == metrics
    assert type(settings["optimizer"]).__name__ == optimizer
    for key, value in options.items():
        assert float(settings["optimizer"].get_config()[key]) == pytest.approx(value)


@pytest.mark.parametrize("loss", [
    {"class_name": "BinaryCrossentropy", "config": {"name": "binary_crossentropy", "from_logits": True}},
    "my_custom_loss", None,
])
def test_losses_the_browser_cannot_compile_leave_the_defaults(loss):
    assert translate_compile_config({"loss": loss, "optimizer": "adam"}) is None


def test_the_lambda_layer_is_refused_before_anything_is_loaded(saved):
    data = next(iter(saved[("k3", "lambda", "keras")].values()))
    with pytest.raises(UploadError) as caught:
        convert_keras_source("keras_v3", "model.keras", data)
    assert "The model uses layers TF.js cannot train: Lambda (layer 'doubling', at" in str(caught.value)


def test_broken_sources_get_plain_messages(saved):
    h5 = next(iter(saved[("k3", "dense", "h5")].values()))
    keras_file = next(iter(saved[("k3", "conv", "keras")].values()))
    with zipfile.ZipFile(io.BytesIO(keras_file)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    garbage = mf.zip_bytes({**members, "config.json": b"garbage"})
    cases = {
        ("keras_h5", h5[:300]): "This .h5 file is damaged or truncated",
        ("keras_v3", garbage): "config.json is not a Keras model configuration",
        ("keras_v3", keras_file[:200]): "The .keras file is damaged or truncated",
        ("saved_model", next(iter(saved[("k3", "dense", "export")].values()))): "no Keras metadata",
        ("pickle", b"x"): "Unknown upload kind 'pickle'",
    }
    for (kind, data), expected in cases.items():
        with pytest.raises(UploadError) as caught:
            convert_keras_source(kind, "x", data)
        assert expected in str(caught.value), (kind, caught.value.problems)
        assert "Traceback" not in str(caught.value)


def test_a_keras3_model_whose_weights_do_not_fit_is_refused(models, monkeypatch):
    from tasks import keras_import

    model = models[("k3", "dense")]
    real = keras_import.translate_model_config

    def wider(config):
        out = real(config)
        out["layers"][1]["config"]["units"] = 7
        return out

    monkeypatch.setattr(keras_import, "translate_model_config", wider)
    with pytest.raises(UploadError, match="could not be rebuilt for TF.js with the same weights: weight 0"):
        keras_import.keras3_to_tf_keras(model)


# --- The Celery job ---------------------------------------------------------------------------------------------------

def store_upload(kind: str, name: str, data: bytes) -> str:
    """What the creation service does before queueing a job: the source under a generated name."""
    return default_storage.save(f"uploads/{uuid.uuid4().hex}/{name}", ContentFile(data))


def create_job(task: Task, kind: str, path: str) -> ConversionJob:
    return ConversionJob.objects.create(task=task, source="upload:test", source_file=path, source_kind=kind)


def run_job(job: ConversionJob) -> ConversionJob:
    """Queue the Celery task as the creation service does: on commit (eager in tests)."""
    with transaction.atomic():
        enqueue_on_commit(convert_uploaded_model, job.pk)
    job.refresh_from_db()
    return job


def db_state() -> dict:
    return {
        "tasks": list(Task.objects.order_by("pk").values()),
        "versions": list(ModelVersion.objects.order_by("pk").values()),
        "jobs": list(ConversionJob.objects.order_by("pk").values("pk", "source", "source_file", "source_kind")),
    }


@pytest.mark.both_modes
@pytest.mark.django_db(transaction=True)
def test_a_good_keras3_upload_job_makes_the_next_version(saved, make_task, tiny_artifacts):
    task = make_task(labels=["a", "b", "c"])
    create_version(task, tiny_artifacts, origin="initial")
    upload = inspect_model_upload(saved[("k3", "dense", "h5")])
    path = store_upload(upload.kind, upload.source_name, upload.source_bytes)
    job = run_job(create_job(task, upload.kind, path))
    assert job.status == ConversionJob.Status.DONE, job.message
    assert job.message == "Converted a Keras 3 .h5 model: 51 parameters, version 2."
    version = job.result
    assert (version.number, version.origin, version.parameter_count) == (2, "conversion", 51)
    assert "Converted from a Keras 3 .h5 model" in version.note
    task.refresh_from_db()
    assert task.current_version == version
    # Running the Celery task again (a redelivery) changes nothing.
    assert convert_uploaded_model(job.pk) == version.pk
    assert task.versions.count() == 2


@pytest.mark.both_modes
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("case", "expected"), [
    ("mismatch", "The model expects 4 input values per row (input shape [None, 4]), but the task has 5 input columns"),
    ("units", "has 3 units, but the task has 2 labels (no, yes)"),
    ("garbage", "This .h5 file is damaged or truncated"),
    ("lambda", "The model uses layers TF.js cannot train: Lambda"),
    ("missing", "The uploaded model file is no longer in storage: upload the model again."),
])
def test_a_bad_upload_job_fails_with_its_reason_and_changes_nothing(saved, make_task, tiny_artifacts, media_root,
                                                                     case, expected):
    overrides = {"input_columns": list("abcde")} if case == "mismatch" else {}
    if case == "units":
        overrides = {"labels": ["no", "yes"]}
    task = make_task(**overrides)
    create_version(task, tiny_artifacts, origin="initial")
    h5 = next(iter(saved[("k3", "dense", "h5")].values()))
    data, kind = {
        "mismatch": (h5, "keras_h5"),
        "units": (h5, "keras_h5"),
        "garbage": (h5[: len(h5) // 3], "keras_h5"),
        "lambda": (next(iter(saved[("k3", "lambda", "keras")].values())), "keras_v3"),
        "missing": (h5, "keras_h5"),
    }[case]
    path = store_upload(kind, "model.src", data)
    if case == "missing":
        default_storage.delete(path)
    job = create_job(task, kind, path)
    media_before, db_before = snapshot(media_root), db_state()
    job = run_job(job)
    assert job.status == ConversionJob.Status.FAILED
    assert expected in job.message
    assert "Traceback" not in job.message and job.result is None and job.finished_at is not None
    assert snapshot(media_root) == media_before
    assert db_state() == db_before


def test_a_keras2_saved_model_with_a_lambda_is_refused_from_its_metadata(tmp_path):
    files = mf.save_keras2(mf.keras2_model("lambda"), "saved_model", tmp_path)
    # The metadata protobuf is read without TensorFlow in the web request, and again before conversion.
    with pytest.raises(UploadError, match=r"cannot train: Lambda \(layer 'doubling'"):
        inspect_model_upload(files)
    with pytest.raises(UploadError, match=r"cannot train: Lambda \(layer 'doubling'"):
        convert_keras_source("saved_model", "saved_model.zip", next(iter(files.values())))
