"""An owner's change to a published task sends it back to an administrator's review (tasks.creation)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from rest_framework.authtoken.models import Token

from tasks.creation import create_task, update_task
from tasks.forms import initial_from_task
from tasks.models import Task
from tests.tasks.test_contributor_views import model_uploads

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

VALUES = {"id": "heart", "title": "Heart disease", "summary_preview": "Predict it.", "data_type": "tabular",
          "input_columns": ["a", "b", "c", "d"], "output_columns": ["y"], "epochs": 4, "round_duration": 2}


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def published(alice, tiny_artifacts) -> Task:
    """Alice's task, reviewed and published by an administrator."""
    files = {"model.json": tiny_artifacts.model_json_bytes(), **tiny_artifacts.shards}
    task = create_task(alice, VALUES, files).task
    assert not task.published and task.review_requested_at is not None  # new tasks wait for a review
    Task.objects.filter(pk=task.pk).update(published=True, review_requested_at=None)
    task.refresh_from_db()
    return task


def form_data(task: Task, **changes) -> dict:
    """The edit form as the browser posts it, unchanged except for ``changes``."""
    data = {}
    for name, value in initial_from_task(task).items():
        if isinstance(value, list) and not name.startswith("preprocessing_"):
            value = "\n".join(map(str, value))
        elif name == "data_example":
            value = ""
        data[name] = "" if value is None else value
    data.update(changes)
    return data


def test_an_owner_edit_of_the_text_unpublishes_and_asks_for_review(alice, published):
    result = update_task(published, alice, {"summary_overview": "<p>New words</p>"})

    assert result.sent_to_review
    task = Task.objects.get(pk="heart")
    assert not task.published and task.review_requested_at is not None
    assert task.summary_overview == "<p>New words</p>"


def test_a_new_model_from_the_owner_asks_for_review(alice, published, other_tiny_artifacts):
    files = {"model.json": other_tiny_artifacts.model_json_bytes(), **other_tiny_artifacts.shards}

    result = update_task(published, alice, {}, files)

    assert result.sent_to_review and result.version.number == 2
    assert not Task.objects.get(pk="heart").published


def test_saving_without_a_change_keeps_the_task_published(alice, published):
    result = update_task(published, alice, {"title": "Heart disease", "summary_overview": published.summary_overview})

    assert not result.sent_to_review
    task = Task.objects.get(pk="heart")
    assert task.published and task.review_requested_at is None


def test_an_administrators_edit_keeps_publication(published, admin_user):
    result = update_task(published, admin_user, {"summary_overview": "Curated."})

    assert not result.sent_to_review
    task = Task.objects.get(pk="heart")
    assert task.published and task.review_requested_at is None


def test_auto_publish_keeps_todays_behaviour(alice, published, settings):
    settings.DISCO_AUTO_PUBLISH = True

    result = update_task(published, alice, {"summary_overview": "Changed."})

    assert not result.sent_to_review and Task.objects.get(pk="heart").published


def test_the_form_edit_says_the_change_awaits_review(alice, published):
    client = Client()
    client.force_login(alice)

    response = client.post("/tasks/heart/edit/", form_data(published, summary_overview="Rewritten."), follow=True)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Your change awaits an administrator&#x27;s review" in html
    assert "Awaiting an administrator's review" in html  # the task page says so too
    task = Task.objects.get(pk="heart")
    assert not task.published and task.summary_overview == "Rewritten."
    assert "heart" not in Client().get("/tasks/").content.decode()  # out of the public catalogue


def test_an_api_patch_unpublishes_and_the_answer_says_so(alice, published):
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")

    response = client.patch("/api/tasks/heart/", json.dumps({"displayInformation": {"model": "A bigger MLP."}}),
                            content_type="application/json")

    assert response.status_code == 200
    body = response.json()
    assert body["published"] is False and body["awaitingReview"] is True
    assert client.get("/api/tasks/heart/").json()["awaitingReview"] is True  # GET's shape is accepted back
    assert client.put("/api/tasks/heart/", json.dumps(client.get("/api/tasks/heart/").json()),
                      content_type="application/json").status_code == 200


def test_an_api_model_upload_unpublishes(alice, published, other_tiny_artifacts):
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    body = encode_multipart(BOUNDARY, {"task": "{}", "model": model_uploads(other_tiny_artifacts)})

    response = client.patch("/api/tasks/heart/", body, content_type=MULTIPART_CONTENT)

    assert response.status_code == 200, response.content
    assert response.json()["published"] is False and response.json()["currentVersion"] == 2


def test_the_admin_lists_tasks_awaiting_review_and_publishing_clears_it(admin_client, alice, published):
    update_task(published, alice, {"summary_overview": "Changed."})

    def listed(review: str) -> bool:
        page = admin_client.get(f"/admin/tasks/task/?review={review}").content.decode()
        return "/admin/tasks/task/heart/change/" in page

    assert listed("awaiting") and not listed("reviewed")
    assert "awaiting review since" in admin_client.get("/admin/tasks/task/").content.decode().lower()

    admin_client.post("/admin/tasks/task/", {"action": "publish", "_selected_action": ["heart"]})

    task = Task.objects.get(pk="heart")
    assert task.published and task.review_requested_at is None
    assert listed("reviewed") and not listed("awaiting")


def test_publishing_from_the_admin_change_page_marks_it_reviewed(admin_client, alice, published):
    from tests.tasks.test_admin import _form_data

    update_task(published, alice, {"summary_overview": "Changed."})
    task = Task.objects.get(pk="heart")
    data = _form_data(task, output_columns='["y"]', summary_overview="Changed.", **{"versions-INITIAL_FORMS": 1})

    response = admin_client.post("/admin/tasks/task/heart/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    task.refresh_from_db()
    assert task.published and task.review_requested_at is None
