"""Model versions: stored through the storage API, numbered, immutable, rolled back, never half-written."""

from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import ValidationError

from tasks.models import ModelVersion
from tasks.versions import VersionError, create_version, read_file, set_current_version
from tests.conftest import snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]


def test_first_version_is_stored_and_becomes_current(make_task, tiny_artifacts, media_root):
    task = make_task()
    version = create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    assert (version.number, version.origin, task.current_version_id) == (1, "initial", version.pk)
    assert version.sha256 == tiny_artifacts.sha256()
    assert version.parameter_count == tiny_artifacts.parameter_count
    assert version.file_names() == ["model.json", *tiny_artifacts.shards]
    for entry in version.files:
        data = read_file(version, entry["name"])
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    assert (media_root / version.storage_dir / "model.json").is_file()
    assert version.weight_specs[0]["shape"] == [4, 3]


def test_versions_are_numbered_in_order_with_their_parent(make_task, tiny_artifacts, other_tiny_artifacts):
    task = make_task()
    first = create_version(task, tiny_artifacts, origin="initial")
    second = create_version(task, other_tiny_artifacts, origin="round", round_number=1)
    assert (second.number, second.parent_id, second.round_number) == (2, first.pk, 1)
    assert first.storage_dir != second.storage_dir
    assert read_file(first, "model.json") == tiny_artifacts.model_json_bytes()
    other = make_task("other")
    assert create_version(other, tiny_artifacts, origin="initial").number == 1


def test_versions_are_immutable(make_task, tiny_artifacts):
    version = create_version(make_task(), tiny_artifacts, origin="initial")
    version.note = "changed"
    with pytest.raises(ValidationError, match="immutable"):
        version.save()
    assert ModelVersion.objects.get(pk=version.pk).note == ""


def test_rollback_and_roll_forward(make_task, tiny_artifacts, other_tiny_artifacts):
    task = make_task()
    create_version(task, tiny_artifacts, origin="initial")
    latest = create_version(task, other_tiny_artifacts, origin="round", round_number=1)
    set_current_version(task, 1)
    task.refresh_from_db()
    assert task.current_version.number == 1
    assert ModelVersion.objects.filter(task=task).count() == 2  # nothing deleted
    set_current_version(task, 2)
    task.refresh_from_db()
    assert task.current_version_id == latest.pk
    with pytest.raises(VersionError, match="no version 7"):
        set_current_version(task, 7)


def test_a_failed_write_leaves_database_and_media_as_before(make_task, tiny_artifacts, other_tiny_artifacts,
                                                           media_root, monkeypatch):
    task = make_task()
    create_version(task, tiny_artifacts, origin="initial")
    before_files, before_rows = snapshot(media_root), list(ModelVersion.objects.values_list("pk", "sha256"))

    def broken_create(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ModelVersion.objects, "create", broken_create)
    with pytest.raises(RuntimeError, match="went away"):
        create_version(task, other_tiny_artifacts, origin="round", round_number=1)
    assert snapshot(media_root) == before_files
    assert list(ModelVersion.objects.values_list("pk", "sha256")) == before_rows
    task.refresh_from_db()
    assert task.current_version.number == 1


def test_task_model_validation_reports_fields(make_task):
    task = make_task()
    task.epochs, task.validation_split = 3, 0
    with pytest.raises(ValidationError) as info:
        task.full_clean()
    assert {"round_duration", "validation_split"} <= set(info.value.message_dict)
