"""GET /api/tasks/<id>/privacy/: the (epsilon, delta) spent over the rounds the server recorded, and clear 400s."""

from __future__ import annotations

import pytest

from aggregation.accountant import privacy_spent
from aggregation.models import Contribution, Participant, PeerRound, PeerTurn, Round
from tasks.versions import create_version

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]


def _federated_rounds(task, artifacts, *, with_updates: int, empty: int = 0) -> None:
    version = create_version(task, artifacts, origin="initial")
    participant = Participant.objects.create(task=task, resume_token="t")
    statuses = ["closed"] * (with_updates - 1) + ["open"] if with_updates else []
    for number, status in enumerate(statuses, start=1):
        rnd = Round.objects.create(task=task, number=number, base_version=version, status=status,
                                   deadline="2030-01-01T00:00:00Z")
        Contribution.objects.create(round=rnd, participant=participant, samples=1, blob="x", nbytes=1)
    for number in range(empty):  # failed or abandoned rounds that no update reached
        Round.objects.create(task=task, number=100 + number, base_version=version, status="failed",
                             deadline="2030-01-01T00:00:00Z")


def test_epsilon_comes_from_the_rounds_the_server_recorded(client, make_task, tiny_artifacts):
    task = make_task("private", clipping_radius=2.0, noise_scale=1.1)
    assert client.get("/api/tasks/private/privacy/").json()["epsilon"] == 0.0
    _federated_rounds(task, tiny_artifacts, with_updates=3, empty=2)
    body = client.get("/api/tasks/private/privacy/").json()
    assert body == {"clippingRadius": 2.0, "noiseScale": 1.1, "delta": 1e-5, "rounds": 3,
                    "epsilon": pytest.approx(privacy_spent(1.1, 3)), "neighbouringRelation": "replace_one"}


def test_client_supplied_rounds_are_ignored(client, make_task, tiny_artifacts):
    task = make_task("private", clipping_radius=1.0, noise_scale=1.0)
    _federated_rounds(task, tiny_artifacts, with_updates=2)
    for query in ("?rounds=0", "?rounds=1000", "?rounds=abc"):
        body = client.get(f"/api/tasks/private/privacy/{query}").json()
        assert body["rounds"] == 2 and body["epsilon"] == pytest.approx(privacy_spent(1.0, 2)), query


def test_decentralized_rounds_count_once_their_peers_exchange(client, make_task):
    task = make_task("peers", scheme="decentralized", min_participants=3, clipping_radius=1.0, noise_scale=1.0)
    peer = Participant.objects.create(task=task, resume_token="p")
    for number, status in enumerate(["closed", "closed", "exchanging", "open"], start=1):
        rnd = PeerRound.objects.create(task=task, number=number, status=status)
        PeerTurn.objects.create(round=rnd, participant=peer, selected=status != "open")
    assert client.get("/api/tasks/peers/privacy/").json()["rounds"] == 3


def test_delta_is_a_setting(client, make_task, settings, tiny_artifacts):
    settings.DISCO_PRIVACY_DELTA = 1e-3
    task = make_task("private", clipping_radius=1.0, noise_scale=1.0)
    _federated_rounds(task, tiny_artifacts, with_updates=5)
    body = client.get("/api/tasks/private/privacy/").json()
    assert body["delta"] == 1e-3 and body["epsilon"] == pytest.approx(privacy_spent(1.0, 5, 1e-3))


def test_zero_noise_has_no_guarantee(client, make_task, tiny_artifacts):
    task = make_task("clip-only", clipping_radius=1.0, noise_scale=0.0)
    _federated_rounds(task, tiny_artifacts, with_updates=1)
    body = client.get("/api/tasks/clip-only/privacy/").json()
    assert body["epsilon"] is None and "no privacy guarantee" in body["note"]


def test_tasks_without_privacy_settings_get_a_400_that_says_so(client, make_task):
    make_task("plain")
    response = client.get("/api/tasks/plain/privacy/")
    assert response.status_code == 400
    assert "no differential privacy settings" in response.json()["detail"]


def test_unknown_tasks_are_404(client, db):
    assert client.get("/api/tasks/nope/privacy/").status_code == 404
