"""/ws/observe/<task>/: the round dashboard's read-only socket (owner and administrators only)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.test import Client

from aggregation import peer_rounds, rounds
from aggregation.admission import CLOSE_REFUSED, CLOSE_UNKNOWN_TASK
from aggregation.models import Participant, Round
from tasks.versions import create_version
from tests.aggregation.websockets import connect, receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_modes]


@pytest.fixture
def owned(make_task, tiny_artifacts):
    users = get_user_model().objects
    owner = users.create_user("owner", password="pw-long-enough-1")
    users.create_user("stranger", password="pw-long-enough-2")
    users.create_user("curator", password="pw-long-enough-3", is_staff=True)
    task = make_task("fed", owner=owner, min_participants=2)
    create_version(task, tiny_artifacts, origin="initial")
    peers = make_task("dec", owner=owner, scheme="decentralized", min_participants=3)
    hidden = make_task("hidden", owner=owner, published=False)
    return task, peers, hidden


def _cookie(username: str) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()


async def _observe(task_id: str, username: str | None):
    headers = [await sync_to_async(_cookie)(username)] if username else []
    return await connect(f"/ws/observe/{task_id}/", join=False, headers=headers)


async def test_the_owner_sees_a_round_fail_and_is_no_participant(owned):
    observer = await _observe("fed", "owner")
    assert json.loads(await observer.receive_from(10)) == {"type": "watching", "task": "fed"}
    await observer.send_to(text_data=json.dumps({"type": "join"}))  # ignored: observers never join
    participant = await connect("/ws/federated/fed/")
    welcome = await receive(participant, "welcome")
    assert welcome["participants"] == 1  # only the real participant counts
    changed = await receive(observer, "event")
    assert changed == {"type": "event", "event": "participants_changed", "round": 1, "participants": 1,
                       "contributed": 0, "waitingFor": 1, "minParticipants": 2}
    rnd = await database_sync_to_async(Round.objects.get)(task_id="fed", number=1)
    assert await database_sync_to_async(rounds.fail)(rnd.pk, "Too few updates.", expected_status="open")
    failed = json.loads(await observer.receive_from(10))
    assert failed == {"type": "event", "event": "round_failed", "round": 1, "reason": "Too few updates.",
                      "next_round": 2, "version": 1}
    assert await database_sync_to_async(Participant.objects.filter(task_id="fed").count)() == 1
    await participant.disconnect()
    await observer.disconnect()


async def test_staff_watch_decentralized_rounds_without_peer_ids_or_keys(owned):
    observer = await _observe("dec", "curator")
    assert json.loads(await observer.receive_from(10))["type"] == "watching"
    await get_channel_layer().group_send(peer_rounds.group_name("dec"), {
        "type": "peers.started", "round": 3, "peers": ["a-peer-id"], "deadline": "soon",
        "public_keys": {"a-peer-id": "secret-ish"}})
    assert json.loads(await observer.receive_from(10)) == {"type": "event", "event": "peers_started", "round": 3}
    await observer.disconnect()


@pytest.mark.parametrize(("task_id", "username", "close_code"), [
    ("fed", "stranger", CLOSE_REFUSED), ("fed", None, CLOSE_REFUSED), ("hidden", "stranger", CLOSE_UNKNOWN_TASK),
    ("nope", "owner", CLOSE_UNKNOWN_TASK),
])
async def test_others_are_refused_with_the_reason(owned, task_id, username, close_code):
    observer = await _observe(task_id, username)
    error = json.loads(await observer.receive_from(10))
    assert error["type"] == "error" and error["code"] == "refused"
    if close_code == CLOSE_REFUSED:
        assert error["reason"] == "Only the owner of task 'fed' or an administrator can watch its rounds."
    else:
        assert error["reason"] == f"No task with id '{task_id}'."
    assert await observer.receive_output(10) == {"type": "websocket.close", "code": close_code}


async def test_the_owner_watches_an_unpublished_task(owned):
    observer = await _observe("hidden", "owner")
    assert json.loads(await observer.receive_from(10)) == {"type": "watching", "task": "hidden"}
    await observer.disconnect()


async def test_the_owner_hears_of_each_evaluation_so_the_validation_curve_grows_live(owned, other_tiny_artifacts):
    from aggregation import evaluations
    from tests.aggregation.round_fixtures import _round

    def closed_round() -> Participant:
        task = owned[0]
        result = create_version(task, other_tiny_artifacts, origin="round", round_number=1,
                                parent=task.current_version)
        _round(task, 1, "closed", base=task.current_version, result=result, seconds=3)
        return Participant.objects.create(task=task, resume_token="fed-eval", kind="python")

    observer = await _observe("fed", "owner")
    assert json.loads(await observer.receive_from(10))["type"] == "watching"
    participant = await database_sync_to_async(closed_round)()
    await database_sync_to_async(evaluations.record)(participant, {"type": "evaluation", "round": 1, "version": 2,
                                                                   "loss": 0.3, "accuracy": 0.9, "samples": 12})
    event = await receive(observer, "event")
    assert event == {"type": "event", "event": "round_evaluated", "round": 1, "reports": 1, "valLoss": 0.3,
                     "valAccuracy": 0.9, "valSamples": 12}
    await observer.disconnect()
