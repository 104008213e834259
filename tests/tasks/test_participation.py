"""Who may take part (tasks.participation) on the HTTP side: model files, training page, sample data, invitations."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from tasks.participation import SESSION_KEY, refusal, token_from_headers
from tasks.serializers import TaskSerializer, task_values_from_disco
from tasks.validation import validate_task_fields
from tests.conftest import TABULAR_TASK

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]


def _endpoints(task) -> list[str]:
    return [f"/tasks/{task.pk}/model.json", f"/tasks/{task.pk}/versions/1/model.json", f"/tasks/{task.pk}/train/"]


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user("owner", password="pw-owner-123")


@pytest.fixture
def member(db):
    return get_user_model().objects.create_user("member", password="pw-member-123")


def _task(served, participation, owner=None):
    served.participation = participation
    served.owner = owner
    served.save()
    return served


def test_open_tasks_admit_anyone(client, served):
    for url in _endpoints(served):
        assert client.get(url).status_code == 200, url


def test_signed_in_tasks_refuse_anonymous_and_say_to_sign_in(client, served, member):
    _task(served, "signed_in")
    for url in _endpoints(served)[:2]:
        response = client.get(url)
        assert response.status_code == 403
        assert response.json()["code"] == "sign_in_required" and "sign in" in response.json()["detail"]
    page = client.get(f"/tasks/{served.pk}/train/")
    assert page.status_code == 403 and b"Log in" in page.content
    client.force_login(member)
    for url in _endpoints(served):
        assert client.get(url).status_code == 200, url


def test_signed_in_tasks_take_an_api_token_in_a_header(client, served, member):
    _task(served, "signed_in")
    key = Token.objects.create(user=member).key
    assert client.get(f"/tasks/{served.pk}/model.json", headers={"X-Disco-Token": key}).status_code == 200
    assert client.get(f"/tasks/{served.pk}/model.json", headers={"Authorization": f"Token {key}"}).status_code == 200
    assert client.get(f"/tasks/{served.pk}/model.json", headers={"X-Disco-Token": "nope"}).status_code == 403


def test_files_of_restricted_tasks_are_not_cached_publicly(client, served, member):
    _task(served, "signed_in")
    client.force_login(member)
    assert client.get(f"/tasks/{served.pk}/versions/1/model.json")["Cache-Control"].startswith("private")
    assert "private" in client.get(f"/tasks/{served.pk}/model.json")["Cache-Control"]


def test_invited_tasks_refuse_anonymous_and_signed_in_strangers(client, served, owner, member):
    _task(served, "invited", owner)
    for url in _endpoints(served)[:2]:
        response = client.get(url)
        assert response.status_code == 403 and response.json()["code"] == "invitation_required"
        assert "ask its owner for an invitation link" in response.json()["detail"]
    client.force_login(member)
    assert client.get(f"/tasks/{served.pk}/model.json").status_code == 403
    assert b"Ask the task's owner" in client.get(f"/tasks/{served.pk}/train/").content


def test_an_invitation_link_grants_the_session_and_redirects_without_the_secret(client, served, owner):
    task = _task(served, "invited", owner)
    assert task.invitation_secret  # made when the task became invitation-only
    response = client.get(f"/tasks/{task.pk}/join/{task.invitation_secret}/")
    assert response.status_code == 302 and response["Location"] == f"/tasks/{task.pk}/train/"
    assert task.invitation_secret not in response["Location"]
    assert task.invitation_secret not in str(client.session[SESSION_KEY])  # only its digest is kept
    for url in _endpoints(task):
        assert client.get(url).status_code == 200, url
    # The invitation's secret also works as a header (the Python participant's --token).
    assert client.get(f"/tasks/{task.pk}/model.json").status_code == 200


def test_rotating_the_invitation_invalidates_old_links_and_grants(client, served, owner):
    task = _task(served, "invited", owner)
    old = task.invitation_secret
    client.get(f"/tasks/{task.pk}/join/{old}/")
    assert client.get(f"/tasks/{task.pk}/model.json").status_code == 200
    other = client_class_for(client)
    other.force_login(owner)
    assert other.post(f"/tasks/{task.pk}/invitation/").status_code == 302
    task.refresh_from_db()
    assert task.invitation_secret != old
    assert client.get(f"/tasks/{task.pk}/model.json").status_code == 403  # the old grant is gone
    refused = client.get(f"/tasks/{task.pk}/join/{old}/")
    assert refused.status_code == 403 and b"not valid" in refused.content
    assert client.get(f"/tasks/{task.pk}/model.json", headers={"X-Disco-Token": old}).status_code == 403
    assert client.get(f"/tasks/{task.pk}/model.json",
                      headers={"X-Disco-Token": task.invitation_secret}).status_code == 200
    page = other.get(f"/tasks/{task.pk}/")
    assert f"/tasks/{task.pk}/join/{task.invitation_secret}/".encode() in page.content


def client_class_for(client):
    return type(client)()


def test_only_the_owner_rotates(client, served, owner, member):
    task = _task(served, "invited", owner)
    old = task.invitation_secret
    client.force_login(member)
    assert client.post(f"/tasks/{task.pk}/invitation/").status_code == 403
    assert client.post(f"/api/tasks/{task.pk}/invitation/").status_code == 403
    task.refresh_from_db()
    assert task.invitation_secret == old
    assert old.encode() not in client.get(f"/tasks/{task.pk}/").content


def test_the_api_shows_and_rotates_the_owners_invitation(client, served, owner):
    task = _task(served, "invited", owner)
    client.force_login(owner)
    shown = client.get(f"/api/tasks/{task.pk}/invitation/").json()
    assert shown["invitationUrl"].endswith(f"/tasks/{task.pk}/join/{task.invitation_secret}/")
    rotated = client.post(f"/api/tasks/{task.pk}/invitation/").json()
    assert rotated["secret"] != shown["secret"]
    task.refresh_from_db()
    assert rotated["secret"] == task.invitation_secret


def test_sample_data_follows_the_rule(client, make_task):
    task = make_task("titanic", participation="signed_in", published=True)
    response = client.get("/tasks/titanic/sample-data/")
    assert response.status_code == 403 and response.json()["code"] == "sign_in_required"
    assert client.get("/tasks/titanic/sample-data.zip").status_code == 403
    task.participation = "open"
    task.save()
    assert client.get("/tasks/titanic/sample-data/").status_code == 200


def test_the_setting_in_disco_shape_and_its_validation():
    body = TaskSerializer(_fake_task()).data["trainingInformation"]
    assert body["participation"] == "open" and body["maxSamplesPerUpdate"] == 100_000
    assert body["maxContributionShare"] == 0.25 and body["maxUpdateNorm"] is None
    values = task_values_from_disco({"trainingInformation": {"participation": "invited", "maxUpdateNorm": 3.0,
                                                             "maxContributionShare": 0.5}})
    assert values == {"participation": "invited", "max_update_norm": 3.0, "max_contribution_share": 0.5}
    errors = validate_task_fields({**TABULAR_TASK, "id": "t", "participation": "friends", "max_update_norm": -1,
                                   "max_contribution_share": 0, "max_samples_per_update": 0})
    assert set(errors) >= {"participation", "max_update_norm", "max_contribution_share", "max_samples_per_update"}


def _fake_task():
    from tasks.models import Task

    return Task(id="t", **TABULAR_TASK)


def test_the_owner_and_administrators_always_may(served, owner):
    task = _task(served, "invited", owner)
    assert refusal(task, user=owner) is None
    admin = get_user_model().objects.create_user("boss", is_staff=True)
    assert refusal(task, user=admin) is None


def test_token_header_reading():
    assert token_from_headers({"x-disco-token": " abc "}) == "abc"
    assert token_from_headers({"Authorization": "Token k1"}) == "k1"
    assert token_from_headers({"Authorization": "Bearer k1"}) == ""


def test_the_form_sets_participation_and_the_bounds(client, owner, tiny_artifacts):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tasks.models import Task
    from tests.tasks.test_contributor_views import FORM

    client.force_login(owner)
    html = client.get("/tasks/new/").content.decode()
    assert 'name="participation"' in html and 'name="max_update_norm"' in html
    files = {"model.json": tiny_artifacts.model_json_bytes(), **tiny_artifacts.shards}
    data = {**FORM, "participation": "invited", "max_samples_per_update": "500", "max_contribution_share": "0.5",
            "max_update_norm": "3.5", "model_files": [SimpleUploadedFile(n, d) for n, d in files.items()]}
    assert client.post("/tasks/new/", data).status_code == 302
    task = Task.objects.get(pk="heart")
    assert (task.participation, task.max_samples_per_update, task.max_contribution_share, task.max_update_norm) \
        == ("invited", 500, 0.5, 3.5)
    assert task.invitation_secret
    # Leaving invitations behind drops the secret; coming back makes a new link, not the old one.
    old = task.invitation_secret
    task.participation = "open"
    task.save()
    assert task.invitation_secret == ""
    task.participation = "invited"
    task.save()
    assert task.invitation_secret not in ("", old)
    edit = {**FORM, "participation": "signed_in", "max_update_norm": ""}
    assert client.post("/tasks/heart/edit/", edit).status_code == 302
    task.refresh_from_db()
    assert task.participation == "signed_in" and task.max_update_norm is None and task.invitation_secret == ""


def test_the_api_patches_participation_and_the_admin_rotates(client, admin_client, served, owner):
    import json as _json

    served.owner = owner
    served.save()
    client.force_login(owner)
    patch = {"trainingInformation": {"participation": "invited", "maxUpdateNorm": 2.5}}
    response = client.patch(f"/api/tasks/{served.pk}/", _json.dumps(patch), content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["trainingInformation"]["participation"] == "invited"
    served.refresh_from_db()
    old = served.invitation_secret
    assert old and served.max_update_norm == 2.5
    assert old not in response.content.decode()  # the task's JSON never carries the invitation
    change = admin_client.get(f"/admin/tasks/task/{served.pk}/change/")
    assert f"/tasks/{served.pk}/join/{old}/".encode() in change.content
    admin_client.post("/admin/tasks/task/", {"action": "rotate_invitation", "_selected_action": [served.pk]})
    served.refresh_from_db()
    assert served.invitation_secret not in ("", old)


def test_compression_in_disco_shape_and_its_validation():
    body = TaskSerializer(_fake_task()).data["trainingInformation"]
    assert body["compression"] == "float32"
    assert task_values_from_disco({"trainingInformation": {"compression": "int8"}}) == {"compression": "int8"}
    federated = {**TABULAR_TASK, "id": "t", "scheme": "federated"}
    assert "compression" not in validate_task_fields({**federated, "compression": "float16"})
    assert "compression" not in validate_task_fields({**federated, "compression": "int8"})
    assert "must be one of: float32, float16, int8" in validate_task_fields(
        {**federated, "compression": "zip"})["compression"][0]
    refused = validate_task_fields({**federated, "scheme": "decentralized", "compression": "int8"})
    assert "decentralized peers exchange them exactly" in refused["compression"][0]


def test_participants_per_round_in_disco_shape_and_its_validation():
    body = TaskSerializer(_fake_task()).data["trainingInformation"]
    assert body["participantsPerRound"] is None
    assert task_values_from_disco({"trainingInformation": {"participantsPerRound": 3}}) == {
        "participants_per_round": 3}
    federated = {**TABULAR_TASK, "id": "t", "scheme": "federated", "min_participants": 2}
    assert "participants_per_round" not in validate_task_fields({**federated, "participants_per_round": None})
    assert "participants_per_round" not in validate_task_fields({**federated, "participants_per_round": 2})
    for bad in (0, -1, 1.5, True):
        assert "at least 1" in validate_task_fields({**federated, "participants_per_round": bad})[
            "participants_per_round"][0]
    below = validate_task_fields({**federated, "min_participants": 3, "participants_per_round": 2})
    assert "could never close" in below["participants_per_round"][0]
    peers = validate_task_fields({**federated, "scheme": "decentralized", "min_participants": 3,
                                  "participants_per_round": 3})
    assert "applies to federated rounds" in peers["participants_per_round"][0]
