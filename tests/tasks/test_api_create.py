"""Creating and changing tasks through the REST API: the same service and messages as the form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from rest_framework.authtoken.models import Token

from tasks.models import Task
from tests.conftest import snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

DISCO_TASK: dict[str, Any] = {
    "id": "heart",
    "displayInformation": {"taskTitle": "Heart disease", "summary": {"preview": "Predict it.", "overview": "Long."},
                           "dataExample": [{"columnName": "age", "columnData": "63"}]},
    "trainingInformation": {
        "epochs": 4, "roundDuration": 2, "batchSize": 8, "validationSplit": 0.2, "dataType": "tabular",
        "scheme": "federated", "minNbOfParticipants": 5, "inputColumns": ["a", "b", "c", "d"],
        "outputColumns": ["y"], "preprocessingFunctions": ["sanitize"], "aggregationStrategy": "krum",
        "aggregatorParams": {"f": 1}, "privacy": {"clippingRadius": 2.0, "noiseScale": 0.5},
    },
}


def multipart(task: dict[str, Any], artifacts=None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"task": json.dumps(task), **extra}
    if artifacts is not None:
        files = {"model.json": artifacts.model_json_bytes(), **artifacts.shards}
        data["model"] = [SimpleUploadedFile(name, blob) for name, blob in files.items()]
    return data


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def token_client(alice) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")


def test_create_with_a_token_and_model_files(token_client, alice, tiny_artifacts):
    response = token_client.post("/api/tasks/", multipart(DISCO_TASK, tiny_artifacts))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == "heart" and body["published"] is False and body["owner"] == "alice"
    assert body["currentVersion"] == 1 and body["conversionJob"] is None
    assert response["Location"] == "http://testserver/api/tasks/heart/"
    task = Task.objects.get(pk="heart")
    assert (task.title, task.summary_overview, task.min_participants) == ("Heart disease", "Long.", 5)
    assert task.aggregator == "krum" and task.aggregator_params == {"f": 1}
    assert (task.clipping_radius, task.noise_scale) == (2.0, 0.5) and task.owner == alice
    # What GET returns is what was sent.
    shown = token_client.get("/api/tasks/heart/").json()
    assert shown["trainingInformation"]["privacy"] == DISCO_TASK["trainingInformation"]["privacy"]
    assert shown["displayInformation"]["dataExample"] == DISCO_TASK["displayInformation"]["dataExample"]


def test_a_get_response_can_be_posted_back_as_a_new_task(token_client, tiny_artifacts):
    token_client.post("/api/tasks/", multipart(DISCO_TASK, tiny_artifacts))
    shown = token_client.get("/api/tasks/heart/").json()
    response = token_client.post("/api/tasks/", multipart({**shown, "id": "heart-2"}, tiny_artifacts))
    assert response.status_code == 201, response.content
    copy = Task.objects.get(pk="heart-2").spec_values()
    assert copy == {**Task.objects.get(pk="heart").spec_values(), "id": "heart-2"}


def test_anonymous_writes_get_401(client, tiny_artifacts):
    response = client.post("/api/tasks/", multipart(DISCO_TASK, tiny_artifacts))
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert Task.objects.count() == 0


def test_errors_are_the_forms_messages_by_field(token_client, media_root):
    bad = json.loads(json.dumps(DISCO_TASK))
    bad["trainingInformation"].update(epochs=5, minNbOfParticipants=2)
    response = token_client.post("/api/tasks/", multipart(bad, None, model=SimpleUploadedFile("m.json", b"{oops")))
    assert response.status_code == 400
    body = response.json()
    assert body["round_duration"] == [
        "Epochs (5) must be a multiple of the round duration (2) so that training ends on a round boundary."]
    assert body["min_participants"] == [
        "Krum with f=1 needs at least 2f+3 = 5 participants: a round may close with only 2 (the minimum number "
        "of participants). Raise the minimum to 5, or choose another aggregator (Krum needs at least 3)."]
    assert body["model"]
    assert Task.objects.count() == 0 and snapshot(media_root) == {}


@pytest.mark.parametrize("data, message", [
    ({}, "form part named 'task'"),
    ({"task": "{not json"}, "not valid JSON"),
    ({"task": json.dumps({**DISCO_TASK, "trainingInformation": {"epoch": 3}})}, "Unknown key in trainingInformation"),
])
def test_malformed_requests_say_what_is_wrong(token_client, data, message):
    response = token_client.post("/api/tasks/", data)
    assert response.status_code == 400 and message in response.json()["task"][0]


def test_session_auth_needs_the_csrf_token(alice, tiny_artifacts):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/api/tasks/", multipart(DISCO_TASK, tiny_artifacts))
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    token = client.get("/tasks/new/").context["csrf_token"]
    response = client.post("/api/tasks/", multipart(DISCO_TASK, tiny_artifacts), HTTP_X_CSRFTOKEN=str(token))
    assert response.status_code == 201, response.content


def test_owner_patches_json_and_others_cannot(token_client, tiny_artifacts, admin_client, other_tiny_artifacts):
    token_client.post("/api/tasks/", multipart(DISCO_TASK, tiny_artifacts))
    patch = {"displayInformation": {"taskTitle": "Heart v2"}, "trainingInformation": {"privacy": None}}
    response = token_client.patch("/api/tasks/heart/", patch, content_type="application/json")
    assert response.status_code == 200, response.content
    task = Task.objects.get(pk="heart")
    assert task.title == "Heart v2" and task.clipping_radius is None and task.epochs == 4
    # A new model through a multipart PATCH becomes version 2.
    response = token_client.patch("/api/tasks/heart/", encode_multipart(BOUNDARY, multipart({}, other_tiny_artifacts)),
                                  content_type=MULTIPART_CONTENT)
    assert response.status_code == 200 and response.json()["currentVersion"] == 2
    bob = get_user_model().objects.create_user("bob", password="pw-bob-123")
    bob_client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=bob).key}")
    Task.objects.filter(pk="heart").update(published=True)
    assert bob_client.patch("/api/tasks/heart/", patch, content_type="application/json").status_code == 403
    Task.objects.filter(pk="heart").update(published=False)
    assert bob_client.patch("/api/tasks/heart/", patch, content_type="application/json").status_code == 404
    assert Client().patch("/api/tasks/heart/", patch, content_type="application/json").status_code == 401
    response = admin_client.patch("/api/tasks/heart/", {"displayInformation": {"taskTitle": "Curated"}},
                                  content_type="application/json")
    assert response.status_code == 200 and Task.objects.get(pk="heart").title == "Curated"


def test_invalid_patch_changes_nothing(token_client, tiny_artifacts):
    token_client.post("/api/tasks/", multipart(DISCO_TASK, tiny_artifacts))
    response = token_client.patch("/api/tasks/heart/", {"trainingInformation": {"epochs": 3}},
                                  content_type="application/json")
    assert response.status_code == 400 and "multiple of the round duration" in response.json()["round_duration"][0]
    assert Task.objects.get(pk="heart").epochs == 4


def test_delete_is_not_offered(token_client, tiny_artifacts):
    token_client.post("/api/tasks/", multipart(DISCO_TASK, tiny_artifacts))
    assert token_client.delete("/api/tasks/heart/").status_code == 405
    assert Task.objects.filter(pk="heart").exists()
