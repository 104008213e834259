"""A task's rounds: GET /api/tasks/<id>/rounds/ (and its CSV), the dashboard page, the task page's summary."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth import get_user_model

from aggregation.round_history import CSV_COLUMNS, round_rows
from tasks.versions import create_version
from tests.aggregation.round_fixtures import FAILED_REASON, SUPERSEDED_REASON, federated_history, peer_history

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]


@pytest.fixture
def people(db):
    users = get_user_model().objects
    return {"owner": users.create_user("owner", password="pw-long-enough-1"),
            "stranger": users.create_user("stranger", password="pw-long-enough-2"),
            "staff": users.create_user("curator", password="pw-long-enough-3", is_staff=True)}


@pytest.fixture
def watched(make_task, people, tiny_artifacts, other_tiny_artifacts):
    task = make_task("watched", owner=people["owner"], aggregator="median")
    return task, federated_history(task, tiny_artifacts, other_tiny_artifacts)


def _as(client, user):
    if user is not None:
        client.force_login(user)
    return client


def _rows(client, task_id: str) -> list[dict]:
    response = client.get(f"/api/tasks/{task_id}/rounds/")
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.mark.parametrize(("who", "published", "participation", "expected"), [
    ("owner", True, "open", 200), ("staff", True, "open", 200), ("stranger", True, "open", 403),
    (None, True, "open", 401), ("owner", False, "open", 200), ("staff", False, "open", 200),
    ("stranger", False, "open", 404), (None, False, "open", 404),
    ("owner", True, "invited", 200), ("staff", True, "invited", 200), ("stranger", True, "invited", 403),
    (None, True, "invited", 401),
])
def test_only_the_owner_and_administrators_see_the_rounds(client, watched, people, who, published, participation,
                                                          expected):
    task, _ = watched
    type(task).objects.filter(pk=task.pk).update(published=published, participation=participation)
    response = _as(client, people.get(who)).get("/api/tasks/watched/rounds/")
    assert response.status_code == expected, response.content
    body = response.json()
    if expected == 200:
        assert body["count"] == 4
    elif expected == 404:
        assert body["detail"] == "No task with id 'watched'. GET /api/tasks/ lists the available tasks."
        assert "rounds" not in json.dumps(body)  # an unpublished task's existence is not revealed
    else:
        assert "owner of task 'watched' or an administrator" in body["detail"]
        assert "/tasks/watched/" in body["detail"]  # where the public summary is
    csv_response = _as(client, people.get(who)).get("/api/tasks/watched/rounds.csv")
    assert csv_response.status_code == expected


def test_rows_in_every_status_newest_first(client, watched, people):
    task, rounds = watched
    rows = _rows(_as(client, people["owner"]), "watched")
    assert [(r["number"], r["status"]) for r in rows] == [(4, "open"), (3, "superseded"), (2, "failed"), (1, "closed")]
    opened, superseded, failed, closed = rows
    host = "http://testserver"
    assert closed == {
        "number": 1, "scheme": "federated", "status": "closed",
        "message": "Aggregated 2 updates with median into version 2.",
        "openedAt": "2026-03-01T12:01:00+00:00", "closedAt": "2026-03-01T12:01:12.500000+00:00",
        "deadline": "2026-03-01T12:06:00+00:00", "durationSeconds": 12.5,
        # its updates were pruned: the tally kept on the round counts
        "contributors": 2, "selectedPeers": None, "dropouts": None, "bytesReceived": 3500, "aggregator": "median",
        "baseVersion": {"number": 1, "modelUrl": f"{host}/tasks/watched/versions/1/model.json"},
        "resultVersion": {"number": 2, "modelUrl": f"{host}/tasks/watched/versions/2/model.json"},
        "valLoss": 0.41, "valAccuracy": 0.85, "valSamples": 40,
    }
    assert failed["message"] == FAILED_REASON and failed["resultVersion"] is None
    assert (failed["contributors"], failed["bytesReceived"], failed["durationSeconds"]) == (1, 700, 30.0)
    assert superseded["message"] == SUPERSEDED_REASON
    assert superseded["resultVersion"]["number"] == 3 and superseded["baseVersion"]["number"] == 2
    assert (superseded["contributors"], superseded["bytesReceived"]) == (2, 2500)
    assert opened["closedAt"] is None and opened["durationSeconds"] is None
    assert (opened["contributors"], opened["bytesReceived"], opened["baseVersion"]["number"]) == (0, 0, 4)
    assert opened["valAccuracy"] is None and opened["valLoss"] is None and opened["valSamples"] is None
    # the version links lead to the version's own model.json
    model = client.get(closed["resultVersion"]["modelUrl"].removeprefix(host))
    assert model.status_code == 200 and "weightsManifest" in json.loads(b"".join(model.streaming_content))


def test_rows_are_paginated(client, watched, people):
    _as(client, people["staff"])
    first = client.get("/api/tasks/watched/rounds/?page_size=3").json()
    assert first["count"] == 4 and [r["number"] for r in first["results"]] == [4, 3, 2]
    second = client.get(first["next"].removeprefix("http://testserver")).json()
    assert [r["number"] for r in second["results"]] == [1] and second["next"] is None


def test_a_decentralized_round_lists_its_peers_and_dropouts(client, make_task, people):
    task = make_task("peers", scheme="decentralized", owner=people["owner"], min_participants=2)
    peer_history(task)
    rows = _rows(_as(client, people["owner"]), "peers")
    assert [(r["number"], r["status"]) for r in rows] == [(2, "open"), (1, "closed")]
    closed = rows[1]
    assert closed["scheme"] == "decentralized"
    assert (closed["selectedPeers"], closed["dropouts"], closed["contributors"]) == (3, 1, 2)
    assert closed["bytesReceived"] is None and closed["baseVersion"] is None  # the server sees no weights
    assert (closed["durationSeconds"], closed["valAccuracy"], closed["valLoss"], closed["valSamples"]) == \
        (65.0, 0.6, 0.7, 90)
    assert "1 peer(s) had not reported done" in closed["message"]
    assert rows[0]["selectedPeers"] is None and rows[0]["dropouts"] is None  # not started: nobody selected yet


@pytest.mark.parametrize("url", ["/api/tasks/watched/rounds/?format=csv", "/api/tasks/watched/rounds.csv"])
def test_csv_has_every_row_with_the_same_values(client, watched, people, url):
    response = _as(client, people["owner"]).get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="watched-rounds.csv"'
    table = list(csv.reader(io.StringIO(response.content.decode())))
    assert table[0] == CSV_COLUMNS
    records = [dict(zip(CSV_COLUMNS, line, strict=True)) for line in table[1:]]
    assert [r["round"] for r in records] == ["4", "3", "2", "1"]
    closed = records[3]
    assert {k: closed[k] for k in ("status", "duration_seconds", "contributors", "bytes_received", "aggregator",
                                   "base_version", "result_version", "val_loss", "val_accuracy", "val_samples",
                                   "dropouts", "opened_at")} == {
        "status": "closed", "duration_seconds": "12.5", "contributors": "2", "bytes_received": "3500",
        "aggregator": "median", "base_version": "1", "result_version": "2", "val_loss": "0.41",
        "val_accuracy": "0.85", "val_samples": "40", "dropouts": "", "opened_at": "2026-03-01T12:01:00+00:00"}
    assert closed["result_model_url"] == "http://testserver/tasks/watched/versions/2/model.json"
    assert records[2]["status"] == "failed" and records[2]["message"] == FAILED_REASON
    assert records[2]["result_version"] == "" and records[2]["bytes_received"] == "700"
    assert records[1]["message"] == SUPERSEDED_REASON  # commas and all, quoted by the writer


def test_the_dashboard_is_for_the_owner_and_administrators(client, watched, people):
    assert client.get("/tasks/watched/rounds/").status_code == 302  # anonymous: to the log-in page
    assert client.get("/tasks/watched/rounds/")["Location"] == "/accounts/login/?next=/tasks/watched/rounds/"
    refused = _as(client, people["stranger"]).get("/tasks/watched/rounds/")
    assert refused.status_code == 403
    assert "Only the task's owner or an administrator can see its round dashboard" in refused.content.decode()
    for who in ("owner", "staff"):
        page = _as(client, people[who]).get("/tasks/watched/rounds/")
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="rounds-config"' in html and 'src="/static/disco/pages/rounds.js"' in html
        assert "<script>" not in html  # CSP: data in json_script blocks, code in modules
        assert [r["number"] for r in page.context["rows"]] == [4, 3, 2, 1]
        assert page.context["config"]["socketPath"] == "/ws/observe/watched/"
        assert 'href="/api/tasks/watched/rounds.csv"' in html


def test_an_unpublished_tasks_dashboard_is_hidden_from_others(client, watched, people):
    task, _ = watched
    type(task).objects.filter(pk=task.pk).update(published=False)
    assert _as(client, people["stranger"]).get("/tasks/watched/rounds/").status_code == 404
    assert _as(client, people["owner"]).get("/tasks/watched/rounds/").status_code == 200


def test_the_task_page_summarises_the_rounds_for_everyone(client, watched, people):
    html = client.get("/tasks/watched/").content.decode()
    assert '<td id="rounds-count">3</td>' in html  # closed, failed, superseded; the open one is not finished
    assert "Round 3: superseded" in html
    assert '<td id="rounds-accuracy">85 % (round 1)</td>' in html
    assert "rounds-dashboard-link" not in html  # the dashboard is the owner's
    assert "rounds-dashboard-link" in _as(client, people["owner"]).get("/tasks/watched/").content.decode()


def test_the_task_page_of_a_task_without_rounds_says_so(client, make_task):
    make_task("fresh")
    html = client.get("/tasks/fresh/").content.decode()
    assert '<td id="rounds-count">0</td>' in html and "rounds-last" not in html and "rounds-accuracy" not in html


def test_a_round_keeps_its_tally_once_it_takes_no_more_updates(make_task, tiny_artifacts):
    from datetime import timedelta

    from django.utils import timezone

    from aggregation import rounds
    from aggregation.models import Contribution, Participant, Round

    task = make_task("tally", min_participants=2)
    version = create_version(task, tiny_artifacts, origin="initial")
    people = [Participant.objects.create(task=task, resume_token=f"t{i}") for i in range(2)]
    closing, failing = (Round.objects.create(task=task, number=n, base_version=version, status=status,
                                             deadline=timezone.now() + timedelta(minutes=1))
                        for n, status in ((1, "open"), (2, "failed")))
    for person, nbytes in zip(people, (1000, 234), strict=True):
        Contribution.objects.create(round=closing, participant=person, samples=5, blob="b", nbytes=nbytes)
    assert rounds.maybe_close(closing.pk)  # every connected participant contributed
    closing.refresh_from_db()
    assert (closing.status, closing.contributors, closing.bytes_received) == ("aggregating", 2, 1234)
    Round.objects.filter(pk=closing.pk).update(status="closed")  # one active round per task
    Round.objects.filter(pk=failing.pk).update(status="open", deadline=timezone.now())
    Contribution.objects.create(round=failing, participant=people[0], samples=5, blob="c", nbytes=99)
    assert rounds.fail(failing.pk, "Too few updates by the deadline.", expected_status="open")
    failing.refresh_from_db()
    assert (failing.status, failing.contributors, failing.bytes_received) == ("failed", 1, 99)
    Contribution.objects.all().delete()  # pruned: the rows say the same
    assert [(r["number"], r["contributors"], r["bytesReceived"]) for r in round_rows(task) if r["number"] < 3] == \
        [(2, 1, 99), (1, 2, 1234)]


def test_the_browsable_api_renders_the_rounds(client, watched, people):
    response = _as(client, people["owner"]).get("/api/tasks/watched/rounds/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and "Superseded: version 4 was made current" in response.content.decode()


def test_a_sampled_federated_round_counts_its_invited_and_those_who_sent_nothing_as_dropouts(client, watched, people):
    """With participantsPerRound the round records whom it invited: the invited who sent nothing dropped out."""
    task, rounds = watched
    failed, opened = rounds["failed"], rounds["open"]
    type(failed).objects.filter(pk=failed.pk).update(invited=["a", "b", "c"], contributors=1)
    type(opened).objects.filter(pk=opened.pk).update(invited=["a", "b"])
    rows = {r["number"]: r for r in _rows(_as(client, people["owner"]), "watched")}
    assert (rows[2]["selectedPeers"], rows[2]["contributors"], rows[2]["dropouts"]) == (3, 1, 2)
    # still open: invited, but nobody can have dropped out of the round yet
    assert (rows[4]["selectedPeers"], rows[4]["dropouts"]) == (2, None)
    assert (rows[1]["selectedPeers"], rows[1]["dropouts"]) == (None, None)  # invited everyone: unknown
    # the dashboard gains a dropouts column and series for such a task only
    page = client.get("/tasks/watched/rounds/").content.decode()
    assert '<th scope="col" class="num">Dropouts</th>' not in page and '"showsDropouts": false' in page
    type(task).objects.filter(pk=task.pk).update(participants_per_round=3)
    page = client.get("/tasks/watched/rounds/").content.decode()
    assert '<th scope="col" class="num">Dropouts</th>' in page and '"showsDropouts": true' in page
    assert "How to read these charts" in page and "participants invited to the round who sent nothing" in page
