"""The REST API and the model file endpoints TF.js loads from."""

from __future__ import annotations

import json

import pytest

from tasks.versions import set_current_version

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]


def test_task_list_shows_published_tasks_in_discos_shape(client, served, make_task):
    make_task("hidden", published=False)
    body = client.get("/api/tasks/").json()
    assert [t["id"] for t in body] == ["served"]
    task = body[0]
    assert task["displayInformation"]["taskTitle"] == "Tiny tabular task"
    assert task["displayInformation"]["summary"] == {"preview": "Predicts b from a.", "overview": ""}
    training = task["trainingInformation"]
    assert training["roundDuration"] == 2 and training["minNbOfParticipants"] == 2
    assert training["inputColumns"] == ["a", "b", "c", "d"] and training["outputColumns"] == ["label"]
    assert training["scheme"] == "federated" and training["dataType"] == "tabular" and training["privacy"] is None
    assert task["currentVersion"] == 2
    assert task["modelUrl"] == "http://testserver/tasks/served/model.json"


def test_task_detail_and_versions(client, served):
    assert client.get("/api/tasks/served/").json()["id"] == "served"
    versions = client.get("/api/tasks/served/versions/").json()
    assert [(v["number"], v["origin"], v["parent"], v["isCurrent"]) for v in versions] == [
        (2, "round", 1, True), (1, "initial", None, False)]
    assert versions[1]["modelUrl"] == "http://testserver/tasks/served/versions/1/model.json"
    assert versions[0]["files"][0]["name"] == "model.json"


@pytest.mark.parametrize("url", ["/api/tasks/nope/", "/api/tasks/nope/versions/", "/api/tasks/hidden/"])
def test_unknown_or_hidden_tasks_are_404_json_with_a_message(client, make_task, url):
    make_task("hidden", published=False)
    response = client.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert "No task with id" in body["detail"] and "/api/tasks/" in body["detail"] and body["status"] == 404


def test_staff_see_unpublished_tasks(admin_client, make_task):
    make_task("hidden", published=False)
    assert [t["id"] for t in admin_client.get("/api/tasks/").json()] == ["hidden"]


def test_current_model_json_points_weights_into_its_fixed_version(client, served, other_tiny_artifacts):
    response = client.get("/tasks/served/model.json")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-cache" and response["X-Disco-Model-Version"] == "2"
    model = response.json()
    assert model["format"] == "layers-model"
    paths = model["weightsManifest"][0]["paths"]
    assert paths == [f"versions/2/{name}" for name in other_tiny_artifacts.shards]
    shard = client.get(f"/tasks/served/{paths[0]}")
    assert shard.status_code == 200 and shard["Cache-Control"] == "public, max-age=31536000, immutable"
    assert b"".join(shard.streaming_content) == next(iter(other_tiny_artifacts.shards.values()))
    # A conditional request for the same version costs nothing.
    assert client.get("/tasks/served/model.json", HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


def test_rollback_changes_what_is_served(client, served, tiny_artifacts):
    set_current_version(served, 1)
    model = client.get("/tasks/served/model.json").json()
    assert model["weightsManifest"][0]["paths"][0].startswith("versions/1/")
    fixed = client.get("/tasks/served/versions/1/model.json")
    assert json.loads(b"".join(fixed.streaming_content)) == tiny_artifacts.model_json


@pytest.mark.parametrize(("url", "words"), [
    ("/tasks/nope/model.json", "No task with id 'nope'"),
    ("/tasks/served/versions/9/model.json", "has no version 9"),
    ("/tasks/served/versions/1/secret.txt", "has no file 'secret.txt'"),
])
def test_model_file_404s_explain(client, served, url, words):
    response = client.get(url)
    assert response.status_code == 404
    assert words in response.json()["detail"]


def test_paths_outside_a_version_do_not_resolve(client, served):
    assert client.get("/tasks/served/versions/1/..%2F..%2Fsettings.py").status_code == 404


def test_task_without_a_model_yet(client, make_task):
    make_task("empty")
    response = client.get("/tasks/empty/model.json")
    assert response.status_code == 404 and "has no model yet" in response.json()["detail"]
    assert client.get("/api/tasks/empty/").json()["modelUrl"] is None


@pytest.mark.parametrize("url", ["/api/tasks/", "/api/tasks/served/", "/api/tasks/served/versions/"])
def test_the_browsable_api_pages_render_for_staff_and_visitors(client, admin_client, served, url):
    """The HTML pages DRF serves a browser, without write forms (a task is written with model files, which they
    cannot send); drawing those forms for staff once failed with a server error."""
    for who in (client, admin_client):
        response = who.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, response.content[:500]
        page = response.content.decode()
        assert "served" in page and "_content" not in page  # no raw-data (POST / PUT / PATCH) form
