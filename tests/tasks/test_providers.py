"""Provider discovery and registration, and load_default_tasks's idempotent conversion."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tasks.models import ConversionJob, Task
from tasks.providers import (
    ProviderError,
    TfjsModelFiles,
    all_providers,
    default_providers,
    get_provider,
    register_provider,
    unregister_provider,
)
from tasks.spec import TaskSpec
from tests.tasks.custom_provider import BrokenProvider, TinyProvider

PREDEFINED = {"mnist", "cifar10", "titanic", "simple_face", "lus_covid", "wikitext"}


def test_predefined_providers_are_discovered():
    assert {p.get_task().id for p in default_providers()} == PREDEFINED


def test_a_provider_registers_with_one_call():
    provider = TinyProvider()
    try:
        assert register_provider(provider) is provider
        assert get_provider("tiny-custom") is provider
        assert set(all_providers()) > PREDEFINED
    finally:
        unregister_provider("tiny-custom")
    with pytest.raises(KeyError, match="No task provider defines 'tiny-custom'"):
        get_provider("tiny-custom")


def test_a_provider_registers_through_settings(settings):
    settings.DISCO_TASK_PROVIDERS = ["tests.tasks.custom_provider.TinyProvider"]
    assert isinstance(get_provider("tiny-custom"), TinyProvider)


@pytest.mark.parametrize(("path", "words"), [
    ("tests.tasks.custom_provider.NotAProvider", "is not a TaskProvider"),
    ("tests.tasks.nowhere.Provider", "Cannot import task provider"),
])
def test_bad_provider_settings_are_explained(settings, path, words):
    settings.DISCO_TASK_PROVIDERS = [path]
    with pytest.raises(ProviderError, match=words):
        all_providers()


def test_register_refuses_objects_without_the_protocol():
    with pytest.raises(ProviderError, match="get_task\\(\\) and get_model\\(\\)"):
        register_provider(object())


@pytest.mark.django_db(transaction=True)
def test_load_default_tasks_converts_once_and_is_idempotent(settings):
    settings.DISCO_TASK_PROVIDERS = ["tests.tasks.custom_provider.TinyProvider"]
    out = StringIO()
    call_command("load_default_tasks", "--only", "tiny-custom", stdout=out)
    task = Task.objects.get(pk="tiny-custom")
    assert task.published and task.provider == "tiny-custom"
    assert task.current_version.number == 1 and task.current_version.origin == "initial"
    assert task.current_version.parameter_count == 23
    assert "conversion done" in out.getvalue()
    task.title = "Edited by an administrator"
    task.save()
    call_command("load_default_tasks", "--only", "tiny-custom", stdout=StringIO())
    task.refresh_from_db()
    assert task.title == "Edited by an administrator"  # admin edits survive a reload
    assert task.versions.count() == 1 and ConversionJob.objects.count() == 1
    call_command("load_default_tasks", "--only", "tiny-custom", "--update", stdout=StringIO())
    task.refresh_from_db()
    assert task.title == "Tiny custom task" and task.versions.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_failing_model_build_is_reported_and_stores_nothing(media_root):
    register_provider(BrokenProvider())
    try:
        with pytest.raises(CommandError, match="1 conversion\\(s\\) failed"):
            call_command("load_default_tasks", "--only", "broken-model", stdout=StringIO())
    finally:
        unregister_provider("broken-model")
    job = ConversionJob.objects.get(task_id="broken-model")
    assert job.status == "failed" and "layer that does not exist" in job.message
    assert Task.objects.get(pk="broken-model").current_version is None
    assert not any(p.is_file() for p in media_root.rglob("*"))


@pytest.mark.django_db(transaction=True)
def test_unknown_ids_are_refused():
    with pytest.raises(CommandError, match="Unknown task ids: nope"):
        call_command("load_default_tasks", "--only", "nope", stdout=StringIO())


class FilesProvider(TinyProvider):
    def __init__(self, path):
        self.path = path

    def get_task(self) -> TaskSpec:
        return TaskSpec(**{**TinyProvider().get_task().as_fields(), "id": "from-files"})

    def get_model(self):
        return TfjsModelFiles(self.path)


def _write(tmp_path, artifacts, *, with_weights: bool):
    (tmp_path / "model.json").write_bytes(artifacts.model_json_bytes())
    if with_weights:
        for name, data in artifacts.shards.items():
            (tmp_path / name).write_bytes(data)
    return tmp_path / "model.json"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_weights", [True, False])
def test_a_provider_can_point_at_a_tfjs_model_on_disk(tmp_path, tiny_artifacts, with_weights):
    register_provider(FilesProvider(_write(tmp_path, tiny_artifacts, with_weights=with_weights)))
    try:
        call_command("load_default_tasks", "--only", "from-files", stdout=StringIO())
    finally:
        unregister_provider("from-files")
    version = Task.objects.get(pk="from-files").current_version
    assert version.parameter_count == 23
    assert [w["shape"] for w in version.weight_specs] == [[4, 3], [3], [3, 2], [2]]
    same_weights = version.sha256 == tiny_artifacts.sha256()
    assert same_weights is with_weights  # without shards, the weights are freshly initialised
    stored = json.loads((tmp_path / "model.json").read_text())
    assert stored["format"] == "layers-model"
