"""API tokens and task creation are limited: the attack is refused with a message, and nothing is created."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from tasks.models import Task
from tests.tasks.test_api_create import DISCO_TASK, multipart
from tests.tasks.test_contributor_views import FORM, model_uploads

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="a-Long-pass-phrase-9")


def test_a_token_for_a_username_and_password(client, alice):
    response = client.post("/api/token/", {"username": "alice", "password": "a-Long-pass-phrase-9"})
    assert response.status_code == 200 and response.json()["token"] == Token.objects.get(user=alice).key


def test_token_requests_are_limited_per_address(client, alice, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        "auth": "4/minute", "task_create": "20/hour"}}
    settings.AXES_FAILURE_LIMIT = 100  # this test is about the per-address rate, whatever the username
    for n in range(4):
        response = client.post("/api/token/", {"username": f"user{n}", "password": "guess"})
        assert response.status_code == 400
    refused = client.post("/api/token/", {"username": "alice", "password": "a-Long-pass-phrase-9"})
    assert refused.status_code == 429
    assert "Too many token requests from your address (limit 4 per minute). Try again in" in refused.json()["detail"]
    assert not Token.objects.exists()


def test_wrong_passwords_on_the_token_endpoint_count_for_the_lockout(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        assert client.post("/api/token/", {"username": "alice", "password": "guess"}).status_code == 400
    locked = client.post("/api/token/", {"username": "alice", "password": "a-Long-pass-phrase-9"})
    assert locked.status_code == 400 and not Token.objects.exists()


def test_wrong_tokens_are_limited_per_address(alice, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        "auth": "3/minute", "task_create": "20/hour"}}
    attacker = Client()
    for n in range(3):
        assert attacker.get("/api/tasks/", HTTP_AUTHORIZATION=f"Token wrong{n}").status_code == 401
    refused = attacker.get("/api/tasks/", HTTP_AUTHORIZATION="Token wrong-again")
    assert refused.status_code == 429 and "Too many wrong API tokens from your address" in refused.json()["detail"]
    # Other addresses, and requests without a token, are served.
    key = Token.objects.create(user=alice).key
    assert Client(REMOTE_ADDR="203.0.113.9").get("/api/tasks/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert attacker.get("/api/tasks/").status_code == 200


def test_task_creation_through_the_api_is_limited_per_user(alice, settings, tiny_artifacts):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        "auth": "10/minute", "task_create": "2/hour"}}
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    for n in range(2):
        response = client.post("/api/tasks/", multipart({**DISCO_TASK, "id": f"heart{n}"}, tiny_artifacts))
        assert response.status_code == 201, response.content
    refused = client.post("/api/tasks/", multipart({**DISCO_TASK, "id": "heart2"}, tiny_artifacts))
    assert refused.status_code == 429
    assert "You have created too many tasks recently (limit 2 per hour" in refused.json()["detail"]
    assert sorted(Task.objects.values_list("pk", flat=True)) == ["heart0", "heart1"]
    # Reading and the owner's changes are not counted.
    assert client.get("/api/tasks/heart0/").status_code == 200
    assert client.patch("/api/tasks/heart0/", {"displayInformation": {"taskTitle": "Renamed"}},
                        content_type="application/json").status_code == 200


def test_the_creation_form_shares_the_limit(alice, settings, tiny_artifacts):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        "auth": "10/minute", "task_create": "1/hour"}}
    client = Client()
    client.force_login(alice)
    assert client.post("/tasks/new/", {**FORM, "model_files": model_uploads(tiny_artifacts)}).status_code == 302
    refused = client.post("/tasks/new/", {**FORM, "id": "heart2", "model_files": model_uploads(tiny_artifacts)})
    assert refused.status_code == 429
    assert "You have created too many tasks recently (limit 1 per hour" in refused.content.decode()
    assert list(Task.objects.values_list("pk", flat=True)) == ["heart"]
