"""GET /api/tasks/<id>/privacy/?rounds=N: the (epsilon, delta) spent, and clear 400s."""

from __future__ import annotations

import pytest

from aggregation.accountant import privacy_spent

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]


def test_reports_epsilon_for_the_tasks_settings(client, make_task):
    make_task("private", clipping_radius=2.0, noise_scale=1.1)
    response = client.get("/api/tasks/private/privacy/?rounds=100")
    assert response.status_code == 200
    body = response.json()
    assert body == {"clippingRadius": 2.0, "noiseScale": 1.1, "delta": 1e-5, "rounds": 100,
                    "epsilon": pytest.approx(83.0998, abs=1e-3)}
    assert body["epsilon"] == privacy_spent(1.1, 100)
    assert client.get("/api/tasks/private/privacy/?rounds=0").json()["epsilon"] == 0.0


def test_delta_is_a_setting(client, make_task, settings):
    settings.DISCO_PRIVACY_DELTA = 1e-3
    make_task("private", clipping_radius=1.0, noise_scale=1.0)
    body = client.get("/api/tasks/private/privacy/?rounds=5").json()
    assert body["delta"] == 1e-3 and body["epsilon"] == pytest.approx(privacy_spent(1.0, 5, 1e-3))


def test_zero_noise_has_no_guarantee(client, make_task):
    make_task("clip-only", clipping_radius=1.0, noise_scale=0.0)
    body = client.get("/api/tasks/clip-only/privacy/?rounds=3").json()
    assert body["epsilon"] is None and "no privacy guarantee" in body["note"]


@pytest.mark.parametrize("query", ["", "?rounds=", "?rounds=-1", "?rounds=2.5", "?rounds=abc", "?rounds=1e3",
                                   "?rounds=\u0663", "?rounds=9999999999"])
def test_rounds_must_be_a_whole_number(client, make_task, query):
    make_task("private", clipping_radius=1.0, noise_scale=1.0)
    response = client.get(f"/api/tasks/private/privacy/{query}")
    assert response.status_code == 400
    assert "rounds must be a whole number from 0 to 999999999" in response.json()["detail"]
    assert "?rounds=3" in response.json()["detail"]


def test_tasks_without_privacy_settings_get_a_400_that_says_so(client, make_task):
    make_task("plain")
    response = client.get("/api/tasks/plain/privacy/?rounds=3")
    assert response.status_code == 400
    assert "no differential privacy settings" in response.json()["detail"]


def test_unknown_tasks_are_404(client, db):
    assert client.get("/api/tasks/nope/privacy/?rounds=1").status_code == 404
