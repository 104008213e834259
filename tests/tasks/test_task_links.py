"""Web addresses in a task (sample dataset link, example image) are http(s) only, wherever they are written.

One rule (``tasks.validation``) refuses ``javascript:``, ``data:`` and anything that is not a complete
http(s) address in the form, the API, the admin and providers, with a message that says what to do;
a refused change stores nothing.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.authtoken.models import Token

from tasks.catalogue import load_provider_task
from tasks.models import Task
from tasks.spec import TaskSpec
from tasks.validation import URL_FIELDS, validate_task_fields
from tests.conftest import TABULAR_TASK, snapshot
from tests.tasks.test_admin import _form_data
from tests.tasks.test_contributor_views import FORM, field_errors, model_uploads

BAD_LINKS = {
    "javascript:window.__pwned=1": "'javascript:' addresses are not allowed",
    "JavaScript:alert(1)": "'javascript:' addresses are not allowed",
    "data:text/html,<script>alert(1)</script>": "'data:' addresses are not allowed",
    "java\tscript:alert(1)": "spaces, control characters or backslashes",
    "vbscript:msgbox(1)": "'vbscript:' addresses are not allowed",
    "//evil.example/x": "not a complete web address",
    "www.example.org/data": "not a complete web address",
}
GOOD_LINKS = ["https://example.org/data?x=1&y=2#part", "http://127.0.0.1:8000/tasks/", ""]


@pytest.mark.parametrize("field", sorted(URL_FIELDS))
@pytest.mark.parametrize(("link", "why"), sorted(BAD_LINKS.items()))
def test_the_rule_refuses_other_schemes_and_says_what_to_do(field, link, why):
    errors = validate_task_fields({**TABULAR_TASK, "id": "t", field: link})

    (message,) = errors[field]
    assert why in message
    assert "must be a web address starting with http:// or https://" in message
    assert "e.g. https://example.org/data, or leave it empty" in message


@pytest.mark.parametrize("link", GOOD_LINKS)
def test_the_rule_accepts_http_and_https_addresses(link):
    errors = validate_task_fields({**TABULAR_TASK, "id": "t", "sample_dataset_link": link,
                                   "data_example_image": link})
    assert not set(errors) & set(URL_FIELDS)


class _HostileProvider:
    def get_task(self) -> TaskSpec:
        return TaskSpec(id="p", title="P", summary_preview="p", input_columns=["a"], output_columns=["b"],
                        sample_dataset_link="javascript:alert(1)")

    def get_model(self):  # pragma: no cover - never reached
        raise AssertionError("the task is refused before its model is built")


@pytest.mark.django_db
def test_providers_are_held_to_the_same_rule():
    with pytest.raises(ValidationError) as caught:
        load_provider_task(_HostileProvider())
    assert "'javascript:' addresses are not allowed" in str(caught.value.message_dict["sample_dataset_link"])
    assert not Task.objects.exists()


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.mark.django_db
def test_the_form_shows_the_message_under_the_field_and_stores_nothing(alice, tiny_artifacts, media_root):
    client = Client()
    client.force_login(alice)
    before = snapshot(media_root)

    response = client.post("/tasks/new/", {**FORM, "sample_dataset_link": "javascript:window.__pwned=1",
                                           "data_example_image": "data:image/svg+xml,<svg onload=alert(1)>",
                                           "model_files": model_uploads(tiny_artifacts)})

    assert response.status_code == 200
    html = response.content.decode()
    (link_error,) = field_errors(html, "sample_dataset_link")
    assert "The sample dataset link must be a web address starting with http:// or https://" in link_error
    assert "&#x27;javascript:&#x27; addresses are not allowed" in link_error
    (image_error,) = field_errors(html, "data_example_image")
    assert "&#x27;data:&#x27; addresses are not allowed" in image_error
    assert not Task.objects.exists() and snapshot(media_root) == before


@pytest.mark.django_db
def test_the_api_answers_400_with_the_message_and_stores_nothing(alice, tiny_artifacts, media_root):
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    task = {"id": "heart", "displayInformation": {"taskTitle": "Heart", "summary": {"preview": "Predict it."},
                                                  "sampleDatasetLink": "javascript:alert(1)"},
            "trainingInformation": {"dataType": "tabular", "inputColumns": ["a", "b", "c", "d"],
                                    "outputColumns": ["y"], "epochs": 4, "roundDuration": 2}}
    before = snapshot(media_root)

    response = client.post("/api/tasks/", {"task": json.dumps(task), "model": model_uploads(tiny_artifacts)})

    assert response.status_code == 400
    (message,) = response.json()["sample_dataset_link"]
    assert "'javascript:' addresses are not allowed" in message
    assert not Task.objects.exists() and snapshot(media_root) == before


@pytest.mark.django_db
def test_an_api_patch_with_a_bad_link_changes_nothing(alice, make_task):
    task = make_task("mine", owner=alice, sample_dataset_link="https://example.org/")
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")

    response = client.patch("/api/tasks/mine/", {"displayInformation": {"dataExampleImage": "data:image/png,x"}},
                            content_type="application/json")

    assert response.status_code == 400 and "data_example_image" in response.json()
    task.refresh_from_db()
    assert (task.data_example_image, task.published) == ("", True)


@pytest.mark.django_db
def test_the_admin_refuses_it_too(admin_client, served):
    response = admin_client.post("/admin/tasks/task/served/change/",
                                 _form_data(served, sample_dataset_link="javascript:alert(1)"))

    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors["sample_dataset_link"])
    assert "&#x27;javascript:&#x27; addresses are not allowed" in errors or "'javascript:' addresses" in errors
    served.refresh_from_db()
    assert served.sample_dataset_link == ""
