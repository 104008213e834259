"""The contributors' pages: the task form (inline errors, kept values, CSRF), my tasks, job status, access."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tasks.creation import create_task
from tasks.models import ConversionJob, ModelVersion, Task
from tests.conftest import snapshot

FORM: dict[str, Any] = {
    "id": "heart", "title": "Heart disease", "summary_preview": "Predict heart disease.", "scheme": "federated",
    "data_type": "tabular", "input_columns": "a, b\nc\nd", "output_columns": "label", "labels": "",
    "preprocessing_tabular": ["sanitize", "standardize"], "epochs": "4", "round_duration": "2", "batch_size": "8",
    "validation_split": "0.2", "min_participants": "2", "round_deadline_seconds": "60",
    "aggregator": "mean", "agg_beta": "0.1", "agg_f": "1",
    "agg_m": "2", "agg_tau": "1.0", "agg_iterations": "1", "max_share_value": "100", "clipping_radius": "1.0",
    "noise_scale": "1.0", "tokenizer": "bytes", "image_channels": "3", "data_example": "Age: 22\nSex: F",
}


def model_uploads(artifacts) -> list[SimpleUploadedFile]:
    files = {"model.json": artifacts.model_json_bytes(), **artifacts.shards}
    return [SimpleUploadedFile(name, data) for name, data in files.items()]


def field_errors(html: str, field: str) -> list[str]:
    """The error messages shown right under ``field``'s input (up to the next field's label)."""
    start = html.index(f'id="id_{field}')
    end = html.find("<label", start + 1)
    chunk = html[start:end if end > 0 else None]
    return re.findall(r'<small class="field-error" role="alert">(.*?)</small>', chunk, re.S)


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bobs_task(db, tiny_artifacts) -> Task:
    bob = get_user_model().objects.create_user("bob", password="pw-bob-123")
    values = {"id": "bobs", "title": "Bob's task", "summary_preview": "Bob's.", "data_type": "tabular",
              "input_columns": ["a", "b", "c", "d"], "output_columns": ["y"], "epochs": 2, "round_duration": 1}
    files = {"model.json": tiny_artifacts.model_json_bytes(), **tiny_artifacts.shards}
    return create_task(bob, values, files).task


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/tasks/new/", "/tasks/mine/", "/tasks/bobs/edit/", "/tasks/bobs/jobs/"])
def test_anonymous_users_are_sent_to_log_in(client, bobs_task, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={url}"
    assert client.post(url, {}).status_code in (302, 405)


@pytest.mark.django_db
def test_the_empty_form_has_every_section_and_sensible_defaults(alice_client):
    html = alice_client.get("/tasks/new/").content.decode()
    for section in ("General", "Description", "Data", "Preprocessing", "Training", "Aggregation", "Privacy", "Model"):
        assert f"</span> {section}</h2>" in html
    assert 'name="csrfmiddlewaretoken"' in html and 'enctype="multipart/form-data"' in html
    assert 'name="epochs" value="10"' in html and 'name="round_duration" value="2"' in html
    assert 'name="clipping_radius" value="1.0"' in html and 'name="noise_scale" value="1.0"' in html
    assert re.search(r'<input type="checkbox" name="dp_enabled"[^>]*id="id_dp_enabled"(?![^>]*checked)', html)
    assert re.search(r'<input type="file" name="model_files"[^>]*accept=".json,.bin,.zip,.h5,.keras"[^>]*multiple',
                     html)
    assert "does not download models from a web address" in html and "tensorflowjs_converter" in html
    assert "My model.json has no weights: initialise them randomly" in html


@pytest.mark.django_db
def test_a_valid_form_creates_the_task_with_its_model(alice_client, alice, tiny_artifacts):
    data = {**FORM, "dp_enabled": "on", "model_files": model_uploads(tiny_artifacts)}
    response = alice_client.post("/tasks/new/", data, follow=True)
    assert response.redirect_chain == [("/tasks/heart/", 302)]
    task = Task.objects.get(pk="heart")
    assert task.owner == alice and not task.published
    assert task.input_columns == ["a", "b", "c", "d"] and task.output_columns == ["label"]
    assert task.preprocessing == ["sanitize", "standardize"] and task.aggregator_params == {}
    assert (task.clipping_radius, task.noise_scale) == (1.0, 1.0)
    assert task.data_example == [{"columnName": "Age", "columnData": "22"}, {"columnName": "Sex", "columnData": "F"}]
    assert task.image_height is None and task.tokenizer == "" and task.current_version.origin == "upload"
    html = response.content.decode()
    assert "version 1" in html and "An administrator publishes it" in html


@pytest.mark.django_db
def test_errors_show_inline_and_every_value_is_kept(alice_client, tiny_artifacts, media_root):
    data = {**FORM, "epochs": "5", "title": "My <b>task</b>", "aggregator": "trimmed_mean", "agg_beta": "0.7",
            "dp_enabled": "on", "clipping_radius": "-1", "input_columns": "", "id": "Not valid",
            "model_files": model_uploads(tiny_artifacts)}
    response = alice_client.post("/tasks/new/", data)
    assert response.status_code == 200
    html = response.content.decode()
    assert field_errors(html, "round_duration") == [
        "Epochs (5) must be a multiple of the round duration (2) so that training ends on a round boundary."]
    assert "fraction trimmed at each end" in field_errors(html, "agg_beta")[0]
    assert "clipping radius is a positive number" in field_errors(html, "clipping_radius")[0]
    assert "at least one input column" in field_errors(html, "input_columns")[0]
    assert "lower-case letters" in field_errors(html, "id")[0]
    # Values kept, escaped; files asked again.
    assert 'value="My &lt;b&gt;task&lt;/b&gt;"' in html and 'name="epochs" value="5"' in html
    assert 'name="agg_beta" value="0.7"' in html and "Age: 22\nSex: F</textarea>" in html
    assert re.search(r'name="dp_enabled"[^>]*checked', html)
    assert re.search(r'value="standardize"[^>]*checked', html)
    assert "Select your model files again" in html
    assert Task.objects.count() == 0 and snapshot(media_root) == {}


@pytest.mark.django_db
def test_parse_errors_and_upload_problems_are_reported_together(alice_client, media_root):
    data = {**FORM, "epochs": "ten", "model_files": [SimpleUploadedFile("model.json", b'{"format": "graph-model"}')]}
    html = alice_client.post("/tasks/new/", data).content.decode()
    assert field_errors(html, "epochs") == ["Enter a whole number."]
    assert "graph model" in " ".join(field_errors(html, "model_files"))
    assert Task.objects.count() == 0 and snapshot(media_root) == {}


@pytest.mark.django_db
def test_missing_model_and_too_large_upload(alice_client, tiny_artifacts, settings):
    html = alice_client.post("/tasks/new/", FORM).content.decode()
    assert "Upload the model" in field_errors(html, "model_files")[0]
    assert "Select your model files again" not in html
    settings.DISCO_MAX_MODEL_BYTES = 50
    html = alice_client.post("/tasks/new/", {**FORM, "model_files": model_uploads(tiny_artifacts)}).content.decode()
    assert "the limit is" in field_errors(html, "model_files")[0]
    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_a_model_not_matching_the_columns_is_explained_under_the_file_input(alice_client, tiny_artifacts):
    html = alice_client.post("/tasks/new/", {**FORM, "input_columns": "a,b",
                                             "model_files": model_uploads(tiny_artifacts)}).content.decode()
    assert "2 input columns" in " ".join(field_errors(html, "model_files"))


@pytest.mark.django_db
def test_the_form_needs_a_csrf_token(alice, tiny_artifacts):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/tasks/new/", {**FORM, "model_files": model_uploads(tiny_artifacts)})
    assert response.status_code == 403 and Task.objects.count() == 0
    token = client.get("/tasks/new/").context["csrf_token"]
    response = client.post("/tasks/new/", {**FORM, "csrfmiddlewaretoken": str(token),
                                           "model_files": model_uploads(tiny_artifacts)})
    assert response.status_code == 302 and Task.objects.filter(pk="heart").exists()


@pytest.mark.django_db
def test_a_contributor_cannot_edit_or_follow_anothers_task(alice_client, bobs_task):
    assert alice_client.get("/tasks/bobs/edit/").status_code == 403
    assert alice_client.post("/tasks/bobs/edit/", {**FORM, "title": "Stolen"}).status_code == 403
    assert alice_client.get("/tasks/bobs/jobs/").status_code == 403
    assert alice_client.get("/tasks/nope/edit/").status_code == 404
    assert Task.objects.get(pk="bobs").title == "Bob's task"


@pytest.mark.django_db
def test_the_owner_edits_with_the_current_values_filled_in(bobs_task, other_tiny_artifacts):
    client = Client()
    client.force_login(bobs_task.owner)
    html = client.get("/tasks/bobs/edit/").content.decode()
    assert re.search(r'name="id" value="bobs"[^>]*disabled', html) and "a\nb\nc\nd</textarea>" in html
    data = {**FORM, "id": "hijack", "title": "Bob's better task", "model_files": model_uploads(other_tiny_artifacts)}
    response = client.post("/tasks/bobs/edit/", data)
    assert response.status_code == 302 and response["Location"] == "/tasks/bobs/"
    task = Task.objects.get(pk="bobs")
    assert task.title == "Bob's better task" and task.current_version.number == 2
    assert not Task.objects.filter(pk="hijack").exists() and ModelVersion.objects.filter(task=task).count() == 2


@pytest.mark.django_db
def test_an_admin_can_edit_any_task(admin_client, bobs_task):
    assert admin_client.get("/tasks/bobs/edit/").status_code == 200
    response = admin_client.post("/tasks/bobs/edit/", {**FORM, "title": "Curated"})
    assert response.status_code == 302 and Task.objects.get(pk="bobs").title == "Curated"


@pytest.mark.django_db
def test_my_tasks_lists_only_ones_own_tasks(alice_client, bobs_task, admin_client, tiny_artifacts):
    alice_client.post("/tasks/new/", {**FORM, "model_files": model_uploads(tiny_artifacts)})
    html = alice_client.get("/tasks/mine/").content.decode()
    assert "Heart disease" in html and "Bob&#x27;s task" not in html and "Awaiting review" in html
    admin_html = admin_client.get("/tasks/mine/").content.decode()
    assert "Heart disease" in admin_html and "Bob&#x27;s task" in admin_html and "bob" in admin_html


@pytest.mark.django_db
def test_job_status_json_and_the_owner_block_on_the_task_page(bobs_task):
    job = ConversionJob.objects.create(task=bobs_task, source="upload:keras_h5", status="failed",
                                       message="Layer Lambda cannot be trained in the browser.")
    client = Client()
    client.force_login(bobs_task.owner)
    body = client.get("/tasks/bobs/jobs/").json()
    assert body == [{"id": job.pk, "status": "failed", "message": job.message, "created": job.created_at.isoformat(),
                     "finished": None, "version": None}]
    html = client.get("/tasks/bobs/").content.decode()
    assert 'href="/tasks/bobs/edit/"' in html and 'data-jobs-url="/tasks/bobs/jobs/"' in html
    assert "Failed: Layer Lambda cannot be trained in the browser." in html and "job_status.js" in html
    stranger = Client()
    stranger.force_login(get_user_model().objects.create_user("carol", password="pw-carol-123"))
    bobs_task.published = True
    bobs_task.save()
    other_html = stranger.get("/tasks/bobs/").content.decode()
    assert "/tasks/bobs/edit/" not in other_html and "data-jobs-url" not in other_html
