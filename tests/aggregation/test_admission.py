"""Who may connect to both WebSocket endpoints, the caps, and joining with the first message."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from aggregation.admission import CLOSE_FULL, CLOSE_JOIN_TIMEOUT, CLOSE_REFUSED
from aggregation.models import Participant
from tasks.participation import rotate_invitation
from tasks.versions import create_version
from tests.aggregation.websockets import connect, receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_modes]

SCHEMES = {"federated": "fed", "decentralized": "dec"}


@pytest.fixture(params=sorted(SCHEMES))
def task(request, make_task, tiny_artifacts):
    scheme = request.param
    made = make_task(SCHEMES[scheme], scheme=scheme, min_participants=3 if scheme == "decentralized" else 2)
    create_version(made, tiny_artifacts, origin="initial")
    made.refresh_from_db()
    return made


def _path(task) -> str:
    return f"/ws/{task.scheme}/{task.pk}/"


def _set(task, **values):
    for name, value in values.items():
        setattr(task, name, value)
    task.save()
    return task


async def _refused(ws, code: str) -> dict:
    error = json.loads(await ws.receive_from(10))
    assert error["type"] == "error" and error["code"] == code, error
    closed = await ws.receive_output(10)
    assert closed == {"type": "websocket.close", "code": CLOSE_REFUSED}
    return error


def _session_cookie(login: str | None = None, join_path: str | None = None) -> tuple[bytes, bytes]:
    client = Client()
    if login:
        client.force_login(get_user_model().objects.get(username=login))
    if join_path:
        assert client.get(join_path).status_code == 302
    return b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_open_tasks_admit_anonymous_participants(task):
    ws = await connect(_path(task))
    assert (await receive(ws, "welcome"))["participantId"]
    await ws.disconnect()


async def test_signed_in_tasks_refuse_anonymous_and_admit_accounts(task):
    await sync_to_async(_set)(task, participation="signed_in")
    ws = await connect(_path(task), join=False)
    error = await _refused(ws, "sign_in_required")
    assert "sign in" in error["reason"] and "--token" in error["reason"]
    await sync_to_async(get_user_model().objects.create_user)("member")
    cookie = await sync_to_async(_session_cookie)(login="member")
    ws = await connect(_path(task), headers=[cookie])
    assert (await receive(ws, "welcome"))["participantId"]
    await ws.disconnect()


async def test_signed_in_tasks_take_an_api_token_header(task):
    from rest_framework.authtoken.models import Token

    await sync_to_async(_set)(task, participation="signed_in")
    user = await sync_to_async(get_user_model().objects.create_user)("script")
    key = (await sync_to_async(Token.objects.create)(user=user)).key
    ws = await connect(_path(task), headers=[(b"x-disco-token", key.encode())])
    assert (await receive(ws, "welcome"))["participantId"]
    await ws.disconnect()


async def test_invited_tasks_admit_invitations_and_refuse_rotated_ones(task):
    await sync_to_async(_set)(task, participation="invited")
    ws = await connect(_path(task), join=False)
    assert "invitation link" in (await _refused(ws, "invitation_required"))["reason"]
    secret = task.invitation_secret
    # The browser: the invitation link put a grant in its session.
    cookie = await sync_to_async(_session_cookie)(join_path=f"/tasks/{task.pk}/join/{secret}/")
    ws = await connect(_path(task), headers=[cookie])
    await receive(ws, "welcome")
    await ws.disconnect()
    # A script: the secret in a header.
    ws = await connect(_path(task), headers=[(b"x-disco-token", secret.encode())])
    await receive(ws, "welcome")
    await ws.disconnect()
    await sync_to_async(rotate_invitation)(task)
    for headers in ([cookie], [(b"x-disco-token", secret.encode())]):
        ws = await connect(_path(task), headers=headers, join=False)
        await _refused(ws, "invitation_required")


async def test_the_resume_token_goes_in_the_first_message_and_the_query_string_is_ignored(task):
    ws = await connect(_path(task))
    first = await receive(ws, "welcome")
    await ws.disconnect()
    again = await connect(_path(task) + f"?resume={first['resumeToken']}")  # ignored: a new participant
    other = await receive(again, "welcome")
    assert not other["resumed"] and other["participantId"] != first["participantId"]
    await again.disconnect()
    back = await connect(_path(task), resume=first["resumeToken"])
    welcome = await receive(back, "welcome")
    assert welcome["resumed"] and welcome["participantId"] == first["participantId"]
    await back.disconnect()


async def test_nothing_is_read_before_join(task):
    ws = await connect(_path(task), join=False)
    await ws.send_to(text_data=json.dumps({"type": "status"}))
    error = await receive(ws, "error")
    assert error["code"] == "join_first" and '"join"' in error["reason"]
    await ws.send_to(text_data="not json")
    assert (await receive(ws, "error"))["code"] == "join_first"
    await ws.send_to(bytes_data=b"\0\0\0\0")
    assert (await receive(ws, "error"))["code"] == "join_first"
    await ws.send_to(text_data=json.dumps({"type": "join"}))
    assert (await receive(ws, "welcome"))["participantId"]
    await ws.disconnect()


async def _full(ws, code: str) -> dict:
    error = await receive(ws, "error")
    assert error["code"] == code, error
    assert await ws.receive_output(10) == {"type": "websocket.close", "code": CLOSE_FULL}
    return error


async def test_participants_per_task_are_capped(task, settings):
    settings.DISCO_MAX_PARTICIPANTS_PER_TASK = 2
    a, b = await connect(_path(task)), await connect(_path(task))
    welcome_a = await receive(a, "welcome")
    await receive(b, "welcome")
    c = await connect(_path(task))
    assert "DISCO_MAX_PARTICIPANTS_PER_TASK" in (await _full(c, "task_full"))["reason"]
    await a.disconnect()
    await receive(b, "participants")  # a's leaving is recorded
    back = await connect(_path(task), resume=welcome_a["resumeToken"])  # a place is free again
    assert (await receive(back, "welcome"))["resumed"]
    await back.disconnect()
    await b.disconnect()


async def test_connections_per_address_are_capped(task, settings):
    settings.DISCO_MAX_CONNECTIONS_PER_ADDRESS = 2
    near = [await connect(_path(task), address="10.0.0.7") for _ in range(2)]
    for ws in near:
        await receive(ws, "welcome")
    third = await connect(_path(task), address="10.0.0.7")
    assert "DISCO_MAX_CONNECTIONS_PER_ADDRESS" in (await _full(third, "too_many_connections"))["reason"]
    elsewhere = await connect(_path(task), address="10.0.0.8")
    await receive(elsewhere, "welcome")
    addresses = await sync_to_async(lambda: sorted(Participant.objects.filter(connected=True)
                                                   .values_list("address", flat=True)))()
    assert addresses == ["10.0.0.7", "10.0.0.7", "10.0.0.8"]
    for ws in [*near, elsewhere]:
        await ws.disconnect()


async def test_a_connection_that_never_joins_is_closed_with_the_reason(task, settings):
    settings.DISCO_JOIN_TIMEOUT_SECONDS = 0.5
    ws = await connect(_path(task), join=False)
    error = await receive(ws, "error")
    assert error["code"] == "join_timeout" and "join at once" in error["reason"]
    assert await ws.receive_output(10) == {"type": "websocket.close", "code": CLOSE_JOIN_TIMEOUT}


async def test_a_joined_connection_is_not_closed_by_the_join_timeout(task, settings):
    settings.DISCO_JOIN_TIMEOUT_SECONDS = 0.2
    ws = await connect(_path(task))
    await receive(ws, "welcome")
    await ws.receive_nothing(timeout=1.0, interval=0.05)  # five timeouts pass
    await ws.send_to(text_data=json.dumps({"type": "status"}))
    while True:  # the connection still answers (a closed one would make receive_from fail)
        message = json.loads(await ws.receive_from(10))
        assert message.get("code") != "join_timeout", message
        if message["type"] in ("status", "participants", "error"):
            break
    await ws.disconnect()


async def test_a_send_racing_the_clients_close_is_dropped_not_raised():
    from autobahn.exception import Disconnected  # what daphne raises for a send on a closing socket

    from aggregation.admission import AdmittingConsumer

    sent = []

    async def closing_socket(message):
        sent.append(message)
        raise Disconnected("Attempt to send on a closed protocol")

    consumer = AdmittingConsumer()
    consumer.base_send = closing_socket
    await consumer.send(text_data='{"type": "participants"}')  # no exception: the disconnect follows
    assert sent == [{"type": "websocket.send", "text": '{"type": "participants"}'}]

    async def broken(message):
        raise ValueError("a real bug")

    consumer.base_send = broken
    with pytest.raises(ValueError, match="a real bug"):
        await consumer.send(text_data="{}")
