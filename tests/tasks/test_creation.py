"""The creation service shared by the form and the API: validation first, then all-or-nothing writes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage

from tasks.creation import create_task, update_task
from tasks.models import ConversionJob, ModelVersion, Task
from tests.conftest import TABULAR_TASK, snapshot

pytestmark = pytest.mark.both_modes

VALUES: dict[str, Any] = {**{k: v for k, v in TABULAR_TASK.items() if k != "published"}, "id": "heart"}


def tfjs_files(artifacts) -> dict[str, bytes]:
    return {"model.json": artifacts.model_json_bytes(), **artifacts.shards}


def rows() -> tuple[int, int, int]:
    return Task.objects.count(), ModelVersion.objects.count(), ConversionJob.objects.count()


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password="pw-bob-123")


@pytest.fixture(scope="module")
def h5_files(tmp_path_factory) -> dict[str, bytes]:
    """A tf_keras .h5 model taking the 4 input columns of VALUES."""
    from tests.conftest import build_tiny_keras_model

    path = tmp_path_factory.mktemp("h5") / "model.h5"
    build_tiny_keras_model().save(path, save_format="h5")
    return {"model.h5": path.read_bytes()}


@pytest.fixture(scope="module")
def five_input_files() -> dict[str, bytes]:
    """TF.js files of a 5 -> 2 classifier: it fits VALUES with a fifth input column."""
    from disco_client.keras_env import tf_keras
    from tasks.conversion import keras_model_to_tfjs

    keras = tf_keras()
    model = keras.Sequential([keras.layers.Input(shape=(5,)), keras.layers.Dense(2, activation="softmax")])
    return tfjs_files(keras_model_to_tfjs(model))


@pytest.mark.django_db
def test_tfjs_upload_becomes_the_current_version_of_an_unpublished_task(alice, tiny_artifacts):
    result = create_task(alice, VALUES, tfjs_files(tiny_artifacts))
    task = result.task
    assert task.owner == alice and task.published is False and result.job is None
    assert result.version.origin == "upload" and result.version.number == 1
    assert task.current_version == result.version
    assert result.version.sha256 == tiny_artifacts.sha256()
    assert default_storage.exists(result.version.storage_path("model.json"))
    assert "alice" in result.version.note


@pytest.mark.django_db
def test_auto_publish_setting_publishes_new_tasks(alice, tiny_artifacts, settings):
    settings.DISCO_AUTO_PUBLISH = True
    assert create_task(alice, VALUES, tfjs_files(tiny_artifacts)).task.published is True


@pytest.mark.django_db(transaction=True)
def test_keras_h5_upload_is_stored_and_converted_by_a_job(alice, h5_files):
    result = create_task(alice, VALUES, h5_files)
    assert result.version is None
    job = result.job
    assert job.source == "upload:keras_h5" and job.source_kind == "keras_h5"
    assert job.source_file.startswith("uploads/heart/") and job.source_file.endswith("/model.h5")
    assert default_storage.exists(job.source_file)
    # Celery is eager in tests: the job ran at commit.
    assert job.status == "done", job.message
    task = Task.objects.get(pk="heart")
    assert task.current_version.origin == "conversion" and job.result == task.current_version


@pytest.mark.django_db
def test_every_problem_is_reported_at_once_and_nothing_is_written(alice, media_root):
    before_rows, before_files = rows(), snapshot(media_root)
    bad = {**VALUES, "id": "Bad Id!", "title": "", "epochs": 5, "round_duration": 2, "aggregator": "trimmed_mean"}
    with pytest.raises(ValidationError) as caught:
        create_task(alice, bad, {"model.json": b'{"format": "graph-model", "modelTopology": {"node": []}}'})
    errors = caught.value.message_dict
    assert set(errors) >= {"id", "title", "round_duration", "aggregator_params", "model"}
    assert "multiple of the round duration" in errors["round_duration"][0]
    assert "graph model" in " ".join(errors["model"])
    assert rows() == before_rows and snapshot(media_root) == before_files


@pytest.mark.django_db
def test_a_model_that_does_not_fit_the_task_is_refused(alice, tiny_artifacts, media_root):
    values = {**VALUES, "input_columns": ["a", "b", "c"]}
    with pytest.raises(ValidationError) as caught:
        create_task(alice, values, tfjs_files(tiny_artifacts))
    assert "3 input columns" in " ".join(caught.value.message_dict["model"])
    assert rows() == (0, 0, 0) and snapshot(media_root) == {}


@pytest.mark.django_db
def test_a_model_is_required_and_the_size_limit_applies(alice, tiny_artifacts, settings):
    with pytest.raises(ValidationError) as caught:
        create_task(alice, VALUES, {})
    assert "Upload the model" in caught.value.message_dict["model"][0]
    settings.DISCO_MAX_MODEL_BYTES = 100
    with pytest.raises(ValidationError) as caught:
        create_task(alice, VALUES, tfjs_files(tiny_artifacts))
    assert "limit" in caught.value.message_dict["model"][0]
    assert rows() == (0, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("task_id, message", [("mine", "reserved"), ("taken", "already exists")])
def test_ids_must_be_free(alice, tiny_artifacts, make_task, task_id, message):
    make_task("taken")
    with pytest.raises(ValidationError) as caught:
        create_task(alice, {**VALUES, "id": task_id}, tfjs_files(tiny_artifacts))
    assert message in caught.value.message_dict["id"][0]


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_storing_the_upload_removes_it_and_leaves_no_task(alice, h5_files, media_root, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("broker down")

    monkeypatch.setattr("tasks.creation.enqueue_on_commit", broken)
    with pytest.raises(RuntimeError):
        create_task(alice, VALUES, h5_files)
    assert rows() == (0, 0, 0) and snapshot(media_root) == {}


@pytest.mark.django_db(transaction=True)
def test_a_failure_while_saving_the_version_leaves_nothing(alice, tiny_artifacts, media_root, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ModelVersion, "save", broken)
    with pytest.raises(RuntimeError):
        create_task(alice, VALUES, tfjs_files(tiny_artifacts))
    assert rows() == (0, 0, 0) and snapshot(media_root) == {}


@pytest.mark.django_db
def test_anonymous_users_cannot_create(tiny_artifacts):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(PermissionDenied):
        create_task(AnonymousUser(), VALUES, tfjs_files(tiny_artifacts))


@pytest.mark.django_db
def test_owner_edits_settings_and_a_new_model_becomes_a_new_version(alice, tiny_artifacts, other_tiny_artifacts):
    first = create_task(alice, VALUES, tfjs_files(tiny_artifacts)).version
    result = update_task(Task.objects.get(pk="heart"), alice, {"epochs": 8, "title": "Heart v2"},
                         tfjs_files(other_tiny_artifacts))
    task = result.task
    assert (task.epochs, task.title, task.batch_size) == (8, "Heart v2", VALUES["batch_size"])
    assert result.version.number == 2 and result.version.parent == first and task.current_version == result.version
    assert ModelVersion.objects.get(pk=first.pk).sha256 == tiny_artifacts.sha256()  # never overwritten


@pytest.mark.django_db
def test_edits_are_validated_and_refused_whole(alice, tiny_artifacts, media_root):
    create_task(alice, VALUES, tfjs_files(tiny_artifacts))
    before = snapshot(media_root)
    task = Task.objects.get(pk="heart")
    with pytest.raises(ValidationError) as caught:
        update_task(task, alice, {"id": "other", "epochs": 3, "title": "Changed"}, {"model.json": b"not json"})
    assert set(caught.value.message_dict) == {"id", "round_duration", "model"}
    task.refresh_from_db()
    assert (task.title, task.epochs) == (VALUES["title"], VALUES["epochs"])
    assert snapshot(media_root) == before and ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_only_the_owner_or_an_admin_may_edit(alice, bob, admin_user, tiny_artifacts):
    task = create_task(alice, VALUES, tfjs_files(tiny_artifacts)).task
    with pytest.raises(PermissionDenied):
        update_task(task, bob, {"title": "Mine now"})
    assert update_task(task, admin_user, {"title": "Curated"}).task.title == "Curated"


@pytest.mark.django_db
def test_settings_the_current_model_cannot_take_need_a_model_that_can(alice, tiny_artifacts, five_input_files,
                                                                       media_root):
    from tasks.versions import VersionError, set_current_version

    create_task(alice, VALUES, tfjs_files(tiny_artifacts))
    task = Task.objects.get(pk="heart")
    five = {"input_columns": ["a", "b", "c", "d", "e"]}
    before = snapshot(media_root)
    with pytest.raises(ValidationError) as caught:
        update_task(task, alice, five)
    message = " ".join(caught.value.message_dict["model"])
    assert "current model (version 1) does not fit the new settings" in message
    assert "expects 4 input values per row" in message and "5 input columns" in message
    task.refresh_from_db()
    assert task.input_columns == VALUES["input_columns"] and snapshot(media_root) == before
    # The same change with a model that fits goes through, as version 2.
    result = update_task(task, alice, five, five_input_files)
    assert result.version.number == 2 and result.task.input_columns == five["input_columns"]
    # Edits that leave the shapes alone need no check; rolling back to the 4-input model is refused.
    assert update_task(result.task, alice, {"title": "Renamed"}).task.title == "Renamed"
    with pytest.raises(VersionError, match="Version 1 does not fit the task's current settings: The model expects 4"):
        set_current_version(result.task, 1)
    assert Task.objects.get(pk="heart").current_version.number == 2
