"""Hostile model uploads: code hidden at several depths, custom objects, foreign modules, a hostile SavedModel.

Each live payload is first shown to be real: a plain Keras load, in a separate process, runs it
and writes the marker. Then the platform's every path refuses it with a message naming what and
where, and the marker never appears: the web request's check, the converter's own check (as a
worker would run it), the isolated conversion process and a whole contributor upload, which
also stores nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tasks.isolated_conversion import convert_untrusted
from tasks.keras_import import convert_keras_source
from tasks.model_files.errors import UploadError
from tasks.models import ConversionJob, ModelVersion, Task
from tasks.uploads import inspect_model_upload
from tests.conftest import snapshot
from tests.hostile_models import HostileFile, build_hostile_files, load_unprotected

LIVE = ["h5_lambda_in_time_distributed", "h5_lambda_three_models_deep", "saved_model_lambda_in_metadata",
        "keras3_lambda_in_time_distributed"]
STATIC = ["h5_custom_class", "h5_wrapper_fn_in_a_constraint", "h5_custom_loss", "keras3_foreign_module",
          "tfjs_nested_lambda"]


@pytest.fixture(scope="module")
def attack(tmp_path_factory) -> tuple[dict[str, HostileFile], Path]:
    folder = tmp_path_factory.mktemp("attack")
    marker = folder / "marker" / "pwned.txt"
    marker.parent.mkdir()
    return build_hostile_files(folder / "files", marker), marker


def _source(case: HostileFile) -> bytes:
    return case.files["model.json"] if case.kind == "tfjs_architecture" else next(iter(case.files.values()))


@pytest.mark.parametrize("name", LIVE)
def test_the_payload_is_real_an_unprotected_keras_runs_it(attack, tmp_path, name):
    cases, marker = attack
    result = load_unprotected(cases[name], tmp_path)
    try:
        assert marker.exists(), f"{name}: the payload did not run\n{result.stdout}\n{result.stderr[-2000:]}"
        assert "the model ran code" in marker.read_text()
    finally:
        marker.unlink(missing_ok=True)


@pytest.mark.parametrize("name", LIVE + STATIC)
def test_the_upload_check_refuses_it_by_name_and_runs_nothing(attack, name):
    cases, marker = attack
    case = cases[name]
    with pytest.raises(UploadError) as caught:
        inspect_model_upload(case.files, allow_random_init=True)
    assert case.expected in str(caught.value), caught.value.problems
    assert "Rebuild it with standard Keras layers" in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", LIVE + STATIC)
def test_the_converter_refuses_it_before_keras_reads_it(attack, name):
    """As a worker would call it, without the web request's check: the converter checks again."""
    cases, marker = attack
    case = cases[name]
    with pytest.raises(UploadError) as caught:
        convert_keras_source(case.kind, "upload", _source(case))
    assert case.expected in str(caught.value), caught.value.problems
    assert not marker.exists()


@pytest.mark.parametrize("name", LIVE)
def test_the_isolated_conversion_refuses_it(attack, name):
    cases, marker = attack
    case = cases[name]
    with pytest.raises(UploadError) as caught:
        convert_untrusted(case.kind, "upload", _source(case))
    assert case.expected in str(caught.value), caught.value.problems
    assert not marker.exists()


@pytest.mark.django_db
def test_a_contributor_uploading_it_gets_the_reason_and_nothing_is_stored(attack, client, django_user_model,
                                                                          media_root):
    cases, marker = attack
    case = cases["h5_lambda_three_models_deep"]
    client.force_login(django_user_model.objects.create_user("mallory", password="pw-for-tests-only"))
    task = {"id": "hostile", "displayInformation": {"taskTitle": "Hostile", "summary": {"preview": "x"}},
            "trainingInformation": {"dataType": "tabular", "inputColumns": ["a", "b", "c", "d"],
                                    "outputColumns": ["y"], "epochs": 2, "roundDuration": 1}}
    before, jobs, versions = snapshot(media_root), ConversionJob.objects.count(), ModelVersion.objects.count()
    name, data = next(iter(case.files.items()))
    response = client.post("/api/tasks/", {"task": json.dumps(task), "model": SimpleUploadedFile(name, data)})
    assert response.status_code == 400, response.content
    assert "Lambda (layer 'innocent'" in response.content.decode()
    assert snapshot(media_root) == before
    assert not Task.objects.filter(pk="hostile").exists()
    assert (ConversionJob.objects.count(), ModelVersion.objects.count()) == (jobs, versions)
    assert not marker.exists()
