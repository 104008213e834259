"""Rounds, updates, decentralized rounds and participants in the admin: viewable, filterable, read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from aggregation.models import Contribution, Evaluation, Participant, PeerRound, Round
from tests.aggregation.round_fixtures import FAILED_REASON, federated_history, peer_history

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

CHANGELISTS = ["round", "contribution", "peerround", "participant", "evaluation"]


@pytest.fixture
def history(make_task, tiny_artifacts, other_tiny_artifacts):
    task = make_task("watched")
    rounds = federated_history(task, tiny_artifacts, other_tiny_artifacts)
    peer = peer_history(make_task("peers", scheme="decentralized"))
    Evaluation.objects.create(round=rounds["closed"], participant=Participant.objects.first(), loss=0.41,
                              accuracy=0.85, samples=40)
    return rounds, peer


@pytest.fixture
def viewer(client):
    """A staff user who holds only the view permissions of the four models (not a superuser)."""
    user = get_user_model().objects.create_user("viewer", password="pw-long-enough-4", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="aggregation",
                                                        codename__startswith="view_"))
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", CHANGELISTS)
def test_staff_see_every_changelist_and_row_page(admin_client, viewer, history, model):
    rounds, peer = history
    for staff in (admin_client, viewer):
        response = staff.get(f"/admin/aggregation/{model}/")
        assert response.status_code == 200
        assert f'href="/admin/aggregation/{model}/add/"' not in response.content.decode()  # no "Add" button
    obj = {"round": rounds["failed"], "contribution": Contribution.objects.first(), "peerround": peer,
           "participant": Participant.objects.first(), "evaluation": Evaluation.objects.first()}[model]
    page = viewer.get(f"/admin/aggregation/{model}/{obj.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "deletelink" not in html  # view only


def test_round_list_shows_the_useful_columns(admin_client, history):
    html = admin_client.get("/admin/aggregation/round/").content.decode()
    for column in ("contributors", "bytes received", "duration", "result version", "message"):
        assert column in html.lower()
    assert "3.4\xa0KB" in html  # round 1's 3500 bytes (its tally)
    assert "12.5 s" in html
    assert '<a href="/tasks/watched/versions/2/model.json">v2</a>' in html
    assert "Aggregation failed (ValueError: shapes differ)" in html


def test_rounds_filter_and_search(admin_client, history):
    failed = admin_client.get("/admin/aggregation/round/?status__exact=failed")
    assert [r.number for r in failed.context["cl"].result_list] == [2]
    searched = admin_client.get("/admin/aggregation/round/", {"q": "superseded"})
    assert [r.number for r in searched.context["cl"].result_list] == [3]
    by_task = admin_client.get("/admin/aggregation/peerround/?task__id__exact=peers")
    assert sorted(r.number for r in by_task.context["cl"].result_list) == [1, 2]
    connected = admin_client.get("/admin/aggregation/participant/?connected__exact=0")
    assert [p.resume_token for p in connected.context["cl"].result_list] == ["watched-b"]
    kinds = admin_client.get("/admin/aggregation/participant/?kind__exact=python")
    assert [p.resume_token for p in kinds.context["cl"].result_list] == ["watched-a"]
    dated = admin_client.get("/admin/aggregation/round/?opened_at__year=2026&opened_at__month=3")
    assert dated.status_code == 200 and len(dated.context["cl"].result_list) == 4


def test_peer_round_list_counts_selected_peers_and_dropouts(admin_client, history):
    listed = admin_client.get("/admin/aggregation/peerround/").context["cl"].result_list
    closed = next(r for r in listed if r.number == 1)
    assert (closed.n_selected, closed.n_dropped) == (3, 1)


@pytest.mark.parametrize("model", CHANGELISTS)
def test_nothing_can_be_added_changed_or_deleted(admin_client, history, model):
    rounds, peer = history
    obj = {"round": rounds["failed"], "contribution": Contribution.objects.first(), "peerround": peer,
           "participant": Participant.objects.first(), "evaluation": Evaluation.objects.first()}[model]
    assert admin_client.get(f"/admin/aggregation/{model}/add/").status_code == 403
    assert admin_client.post(f"/admin/aggregation/{model}/{obj.pk}/change/", {"message": "edited"}).status_code == 403
    assert admin_client.post(f"/admin/aggregation/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    action = admin_client.post(f"/admin/aggregation/{model}/", {"action": "delete_selected",
                                                                 "_selected_action": [obj.pk], "post": "yes"})
    assert action.status_code in (200, 302)
    assert type(obj).objects.filter(pk=obj.pk).exists()
    rnd = Round.objects.get(pk=rounds["failed"].pk)
    assert rnd.message == FAILED_REASON and PeerRound.objects.filter(pk=peer.pk).exists()


def test_the_resume_token_is_never_shown(admin_client, history):
    participant = Participant.objects.get(resume_token="watched-a")
    html = admin_client.get(f"/admin/aggregation/participant/{participant.pk}/change/").content.decode()
    assert "watched-a" not in html


def test_non_staff_users_are_sent_to_the_admin_log_in(client, history, django_user_model):
    client.force_login(django_user_model.objects.create_user("someone", password="pw-long-enough-5"))
    for model in CHANGELISTS:
        response = client.get(f"/admin/aggregation/{model}/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_a_round_page_lists_the_evaluation_reports_its_metrics_average(admin_client, history):
    rounds, _ = history
    html = admin_client.get(f"/admin/aggregation/round/{rounds['closed'].pk}/change/").content.decode()
    assert "Evaluations" in html and "0.85" in html and "40" in html
    listing = admin_client.get("/admin/aggregation/evaluation/").content.decode()
    assert "watched" in listing and "federated" in listing
