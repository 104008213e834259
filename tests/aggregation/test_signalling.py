"""The decentralized signalling consumer over in-process WebSockets: quorum, signals, relay, deadlines, refusals."""

from __future__ import annotations

import json
import struct
import time

import pytest
from asgiref.sync import sync_to_async

from aggregation.models import PeerRound, PeerTurn
from aggregation.signalling import max_relay_bytes
from aggregation.sweeper import sweep
from disco_client.peer_crypto import encode_public_key, generate_private_key
from disco_client.relay import RELAY_PART_BYTES, RELAY_SLACK, RelayReassembler, decode_relay_frame, split_relay
from tasks.models import Task
from tests.aggregation.websockets import connect as connect_to
from tests.aggregation.websockets import receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_modes]


@pytest.fixture
def dec_task(make_task):
    return make_task("dec", scheme="decentralized", min_participants=3)


async def connect(task_id="dec", query="", **options):
    return await connect_to(f"/ws/decentralized/{task_id}/{query}", **options)


async def receive_bytes(communicator, timeout: float = 10) -> bytes:
    while True:
        output = await communicator.receive_output(timeout)
        if output.get("bytes") is not None:
            return output["bytes"]


async def drain(communicator, wait: float = 0.5) -> list[str]:
    """The types of the messages that arrive within ``wait`` seconds ("binary" for a binary frame)."""
    kinds = []
    while not await communicator.receive_nothing(wait):
        output = await communicator.receive_output()
        kinds.append("binary" if output.get("bytes") is not None else json.loads(output["text"])["type"])
    return kinds


def relay(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<I", len(raw)) + raw + payload


def unrelay(frame: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack_from("<I", frame)
    return json.loads(frame[4:4 + n]), frame[4 + n:]


async def join(count: int, task_id: str = "dec") -> tuple[list, list[str]]:
    sockets, ids = [], []
    for _ in range(count):
        ws = await connect(task_id)
        sockets.append(ws)
        ids.append((await receive(ws, "welcome"))["participantId"])
    return sockets, ids


async def start_round(count: int = 3) -> tuple[list, list[str], list[dict]]:
    sockets, ids = await join(count)
    for ws in sockets:
        await ws.send_to(text_data=json.dumps({"type": "ready", "round": 1}))
    return sockets, ids, [await receive(ws, "peers") for ws in sockets]


async def close_all(sockets) -> None:
    for ws in sockets:
        await ws.disconnect()


def _state():
    return (list(PeerRound.objects.order_by("number").values_list("number", "status")),
            list(PeerTurn.objects.order_by("pk").values_list("participant_id", "selected", "done_at", "left_at")))


async def test_welcome_describes_the_task_and_the_round(dec_task, settings):
    settings.DISCO_ICE_SERVERS = [{"urls": "stun:stun.example.org:3478"}]
    ws = await connect()
    welcome = await receive(ws, "welcome")
    assert welcome["round"] == 1 and welcome["participants"] == 1 and welcome["ready"] == 0
    assert welcome["waitingFor"] == 3 and welcome["minParticipants"] == 3 and welcome["resumeToken"]
    assert welcome["relayAllowed"] is True and welcome["secure"] is False and welcome["maxShareValue"] == 100.0
    assert welcome["iceServers"] == [{"urls": "stun:stun.example.org:3478"}]
    await ws.send_to(text_data=json.dumps({"type": "status"}))
    status = await receive(ws, "status")
    assert status["round"] == 1 and status["participants"] == 1
    await ws.disconnect()


async def test_unknown_or_federated_tasks_are_refused_and_closed(dec_task, make_task):
    await sync_to_async(make_task)("fedonly")
    for task_id in ("nope", "fedonly"):
        ws = await connect(task_id)
        error = json.loads(await ws.receive_from())
        assert error["type"] == "error" and error["code"] == "unknown_task" and "decentralized" in error["reason"]
        assert (await ws.receive_output())["type"] == "websocket.close"


async def test_quorum_sends_every_peer_the_sorted_list_and_opens_the_next_round(dec_task):
    sockets, ids, peers = await start_round(3)
    assert all(p["round"] == 1 and p["peers"] == sorted(ids) and p["deadline"] for p in peers)
    assert await sync_to_async(lambda: list(PeerRound.objects.order_by("number").values_list("number", "status")))() \
        == [(1, "exchanging"), (2, "open")]
    await sockets[0].send_to(text_data=json.dumps({"type": "status"}))
    assert (await receive(sockets[0], "status"))["round"] == 2  # late joiners and finished peers go on to round 2
    await close_all(sockets)


async def test_two_ready_of_three_connected_wait_for_the_third(dec_task):
    sockets, _ = await join(3)
    for ws in sockets[:2]:
        await ws.send_to(text_data=json.dumps({"type": "ready", "round": 1}))
    participants = await receive(sockets[2], "participants")
    while participants["ready"] < 2:
        participants = await receive(sockets[2], "participants")
    assert participants["waitingFor"] == 1
    assert "peers" not in await drain(sockets[0])  # no peer list yet
    await sockets[2].send_to(text_data=json.dumps({"type": "ready", "round": 1}))
    assert len((await receive(sockets[0], "peers"))["peers"]) == 3
    await close_all(sockets)


async def test_signals_are_passed_to_the_named_peer_only(dec_task):
    sockets, ids, _ = await start_round(3)
    offer = {"sdp": "v=0 ...", "kind": "offer"}
    await sockets[0].send_to(text_data=json.dumps({"type": "signal", "to": ids[1], "data": offer}))
    assert await receive(sockets[1], "signal") == {"type": "signal", "from": ids[0], "data": offer}
    assert "signal" not in await drain(sockets[2], 0.3)
    await close_all(sockets)


async def test_relayed_frames_arrive_byte_for_byte_with_the_sender_named(dec_task):
    sockets, ids, _ = await start_round(3)
    payload = bytes(range(256)) * 40
    await sockets[0].send_to(bytes_data=relay({"to": ids[2], "round": 1, "kind": "update"}, payload))
    header, body = unrelay(await receive_bytes(sockets[2]))
    assert header == {"from": ids[0], "round": 1, "kind": "update", "part": 0, "parts": 1} and body == payload
    assert "binary" not in await drain(sockets[1], 0.3)
    await close_all(sockets)


async def test_parts_of_a_large_payload_are_forwarded_in_order_with_their_numbers(dec_task):
    sockets, ids, _ = await start_round(3)
    payload = bytes(range(256)) * 9000  # 2.3 MB: three parts of at most 1 MiB
    frames = split_relay({"to": ids[1], "round": 1, "kind": "share"}, payload)
    assert len(frames) == 3 and max(map(len, frames)) <= max_relay_bytes()
    for frame in frames:
        await sockets[0].send_to(bytes_data=frame)
    joiner = RelayReassembler(max_bytes=len(payload))
    got = [joiner.push(*decode_relay_frame(await receive_bytes(sockets[1]))) for _ in frames]
    assert got[:2] == [None, None] and got[2] == ((ids[0], 1, "share"), payload)
    await close_all(sockets)


async def test_one_frame_over_a_part_is_refused_whatever_the_model_limit(dec_task, settings):
    settings.DISCO_MAX_MODEL_BYTES = 200 * 1024 * 1024
    sockets, ids, _ = await start_round(3)
    await sockets[0].send_to(bytes_data=relay({"to": ids[1], "round": 1, "kind": "update"},
                                              b"\0" * (RELAY_PART_BYTES + RELAY_SLACK)))
    error = await receive(sockets[0], "error")
    assert error["code"] == "too_large" and "parts of at most 1 MiB" in error["reason"]
    assert "binary" not in await drain(sockets[1], 0.3)
    await close_all(sockets)


async def test_ready_public_keys_reach_every_peer_with_the_round_list(dec_task):
    sockets, ids = await join(3)
    keys = [encode_public_key(generate_private_key()) for _ in sockets]
    await sockets[0].send_to(text_data=json.dumps({"type": "ready", "round": 1, "publicKey": "not a key"}))
    error = await receive(sockets[0], "error")
    assert error["code"] == "bad_public_key" and "publicKey" in error["reason"]
    for ws, key in zip(sockets, keys, strict=True):
        await ws.send_to(text_data=json.dumps({"type": "ready", "round": 1, "publicKey": key}))
    for ws in sockets:
        peers = await receive(ws, "peers")
        assert peers["publicKeys"] == dict(zip(ids, keys, strict=True))
    stored = await sync_to_async(lambda: sorted(PeerTurn.objects.values_list("public_key", flat=True)))()
    assert stored == sorted(keys)  # public keys only: no private key ever reaches the server
    await close_all(sockets)


@pytest.mark.parametrize(("message", "code", "words"), [
    ("not json", "bad_json", "JSON objects"),
    (json.dumps({"type": "dance"}), "unknown_type", "'dance'"),
    (json.dumps({"type": "ready", "round": 7}), "wrong_round", "the open round is 1"),
    (json.dumps({"type": "ready", "round": "1"}), "wrong_round", "the open round is 1"),
    (json.dumps({"type": "done", "round": 1}), "wrong_round", "not exchanging"),
    (json.dumps({"type": "signal", "to": "00000000-0000-0000-0000-000000000000", "data": {}}), "unknown_peer",
     "No connected peer"),
    (json.dumps({"type": "signal", "to": "robert'); DROP TABLE", "data": {}}), "unknown_peer", "No connected peer"),
])
async def test_bad_control_messages_get_an_error_and_change_nothing(dec_task, message, code, words):
    sockets, _ = await join(2)
    before = await sync_to_async(_state)()
    await sockets[0].send_to(text_data=message)
    error = await receive(sockets[0], "error")
    assert error["code"] == code and words in error["reason"], error
    assert await sync_to_async(_state)() == before
    await sockets[0].send_to(text_data=json.dumps({"type": "status"}))  # still usable
    assert (await receive(sockets[0], "status"))["round"] == 1
    await close_all(sockets)


async def test_bad_relayed_frames_are_refused(dec_task, settings):
    sockets, ids, _ = await start_round(3)
    outsider = await connect()
    outsider_id = (await receive(outsider, "welcome"))["participantId"]
    cases = [
        (b"\x01\x02", "bad_relay", "4-byte header length"),
        (struct.pack("<I", 99) + b"{}", "bad_relay", "claims 99 bytes"),
        (relay({"to": ids[1], "round": 1}, b"x"), "bad_relay", '"kind"'),
        (relay({"to": "nobody", "round": 1, "kind": "update"}, b"x"), "unknown_peer", "No connected peer"),
        (relay({"to": outsider_id, "round": 1, "kind": "update"}, b"x"), "not_in_round", "is not one of them"),
        (relay({"to": ids[1], "round": 2, "kind": "update"}, b"x"), "wrong_round", "round 1 is"),
    ]
    for frame, code, words in cases:
        await sockets[0].send_to(bytes_data=frame)
        error = await receive(sockets[0], "error")
        assert error["code"] == code and words in error["reason"], (error, frame)
    await outsider.send_to(bytes_data=relay({"to": ids[1], "round": 1, "kind": "update"}, b"x"))
    assert (await receive(outsider, "error"))["reason"].endswith("you are not one of them.")
    settings.DISCO_MAX_MODEL_BYTES = 10
    await sockets[0].send_to(bytes_data=relay({"to": ids[1], "round": 1, "kind": "update"}, b"\0" * 70_000))
    assert (await receive(sockets[0], "error"))["code"] == "too_large"
    for ws in sockets[1:]:
        assert "binary" not in await drain(ws, 0.2)  # nothing was forwarded
    await close_all([*sockets, outsider])


async def test_a_task_can_forbid_the_relay(dec_task):
    await sync_to_async(Task.objects.filter(pk="dec").update)(allow_relay=False)
    sockets, ids, _ = await start_round(3)
    await sockets[0].send_to(bytes_data=relay({"to": ids[1], "round": 1, "kind": "update"}, b"x"))
    error = await receive(sockets[0], "error")
    assert error["code"] == "relay_forbidden" and "connect directly" in error["reason"]
    assert "binary" not in await drain(sockets[1], 0.3)
    await close_all(sockets)


async def test_the_round_closes_when_every_peer_is_done(dec_task):
    sockets, ids, _ = await start_round(3)
    for ws in sockets:
        await ws.send_to(text_data=json.dumps({"type": "done", "round": 1}))
    closed = [await receive(ws, "round_closed") for ws in sockets]
    assert all(c == {"type": "round_closed", "round": 1, "nextRound": 2, "peers": sorted(ids)} for c in closed)
    rounds, turns = await sync_to_async(_state)()
    assert rounds == [(1, "closed"), (2, "open")]
    assert len(turns) == 3 and all(selected and done and left is None for _, selected, done, left in turns)
    for ws in sockets:  # and round 2 works the same way
        await ws.send_to(text_data=json.dumps({"type": "ready", "round": 2}))
    assert (await receive(sockets[1], "peers"))["round"] == 2
    await close_all(sockets)


async def test_a_peer_leaving_mid_round_does_not_stall_the_others(dec_task):
    sockets, ids, _ = await start_round(3)
    await sockets[2].disconnect()
    for ws in sockets[:2]:
        assert await receive(ws, "peer_left") == {"type": "peer_left", "round": 1, "peer": ids[2]}
        await ws.send_to(text_data=json.dumps({"type": "done", "round": 1}))
    closed = await receive(sockets[0], "round_closed")
    assert closed["peers"] == sorted(ids[:2])
    await close_all(sockets[:2])


async def test_peers_agree_on_the_updates_all_of_them_hold(dec_task):
    sockets, ids, _ = await start_round(3)
    a, b, c = ids
    # c's update reached a but not b before c left: a holds {a, b, c}, b holds {a, b}.
    await sockets[0].send_to(text_data=json.dumps({"type": "received", "round": 1, "peers": [a, b, c]}))
    await sockets[2].disconnect()
    assert "agreed" not in await drain(sockets[0], 0.3)  # b has not reported yet
    await sockets[1].send_to(text_data=json.dumps({"type": "received", "round": 1, "peers": [b, a]}))
    agreed = [await receive(ws, "agreed") for ws in sockets[:2]]
    assert agreed[0] == agreed[1] == {"type": "agreed", "round": 1, "peers": sorted([a, b])}
    stored = await sync_to_async(lambda: PeerRound.objects.get(number=1).agreed)()
    assert stored == sorted([a, b])
    await close_all(sockets[:2])


@pytest.mark.parametrize(("peers", "words"), [
    ("all", "'received' lists"),
    (["00000000-0000-0000-0000-000000000000"], "'received' lists"),
    ([], "'received' lists"),  # a peer always holds its own update
])
async def test_bad_received_reports_are_refused(dec_task, peers, words):
    sockets, ids, _ = await start_round(3)
    await sockets[0].send_to(text_data=json.dumps({"type": "received", "round": 1, "peers": peers}))
    error = await receive(sockets[0], "error")
    assert error["code"] == "bad_report" and words in error["reason"], error
    assert await sync_to_async(lambda: PeerTurn.objects.filter(received__isnull=False).count())() == 0
    await close_all(sockets)


async def sweep_until(communicator, kind: str, timeout: float = 10) -> dict:
    """Sweep (the consumer keeps no timers) until a message of type ``kind`` arrives, within ``timeout``."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        await sync_to_async(sweep)()
        # receive_nothing, not a receive that times out: a timeout would cancel the application.
        while not await communicator.receive_nothing(0.2):
            message = json.loads(await communicator.receive_from())
            if message["type"] == kind:
                return message
    raise AssertionError(f"No {kind!r} message within {timeout} s of sweeping")


async def test_the_exchange_deadline_agrees_on_the_reports_it_has(dec_task):
    await sync_to_async(Task.objects.filter(pk="dec").update)(round_deadline_seconds=1, min_participants=2)
    sockets, ids = await join(2)
    for ws in sockets:
        await ws.send_to(text_data=json.dumps({"type": "ready", "round": 1}))
    await receive(sockets[0], "peers", timeout=5)
    await sockets[0].send_to(text_data=json.dumps({"type": "received", "round": 1, "peers": [ids[0]]}))
    agreed = await sweep_until(sockets[0], "agreed")  # the other peer never reported
    assert agreed["peers"] == [ids[0]]
    await close_all(sockets)


async def test_deadlines_start_a_round_with_the_minimum_and_close_one_with_a_silent_peer(dec_task):
    # The validation keeps real deadlines >= 5 s; one second keeps this test short.
    await sync_to_async(Task.objects.filter(pk="dec").update)(round_deadline_seconds=1, min_participants=2)
    sockets, ids = await join(3)
    for ws in sockets[:2]:
        await ws.send_to(text_data=json.dumps({"type": "ready", "round": 1}))
    peers = await sweep_until(sockets[0], "peers")  # the third never said ready
    assert peers["peers"] == sorted(ids[:2])
    await sockets[0].send_to(text_data=json.dumps({"type": "done", "round": 1}))  # the second stays silent
    closed = await sweep_until(sockets[0], "round_closed")
    assert closed["peers"] == [ids[0]]
    message = await sync_to_async(lambda: PeerRound.objects.get(number=1).message)()
    assert "exchange deadline" in message
    await close_all(sockets)


async def test_a_peer_can_resume_with_its_token(dec_task):
    ws = await connect()
    welcome = await receive(ws, "welcome")
    await ws.disconnect()
    again = await connect(resume=welcome["resumeToken"])
    back = await receive(again, "welcome")
    assert back["resumed"] and back["participantId"] == welcome["participantId"]
    await again.disconnect()


def _peer_metrics(number: int) -> tuple:
    return PeerRound.objects.filter(task_id="dec", number=number).values_list("val_loss", "val_accuracy",
                                                                              "val_samples").get()


async def test_peers_report_their_evaluation_of_a_round_they_finished(dec_task):
    sockets, ids, _ = await start_round(3)
    outsider = await connect()
    await receive(outsider, "welcome")
    message = {"type": "evaluation", "round": 1, "loss": 0.5, "accuracy": 0.8, "samples": 20}
    await sockets[0].send_to(text_data=json.dumps(message))  # not done yet: it has no round result
    assert (await receive(sockets[0], "error"))["code"] == "not_in_round"
    for ws in sockets:
        await ws.send_to(text_data=json.dumps({"type": "done", "round": 1}))
    for ws in sockets:
        await receive(ws, "round_closed")
    for ws, (loss, samples) in zip(sockets[:2], [(0.5, 20), (1.0, 30)], strict=True):
        await ws.send_to(text_data=json.dumps({**message, "loss": loss, "samples": samples}))
        assert await receive(ws, "evaluation_recorded") == {"type": "evaluation_recorded", "round": 1,
                                                           "samples": samples}
    loss, accuracy, samples = await sync_to_async(_peer_metrics)(1)
    assert samples == 50 and abs(loss - 0.8) < 1e-12 and abs(accuracy - 0.8) < 1e-12
    await outsider.send_to(text_data=json.dumps(message))  # joined after the round started
    refused = await receive(outsider, "error")
    assert refused["code"] == "not_in_round" and refused["about"] == "evaluation"
    await sockets[0].send_to(text_data=json.dumps(message))
    assert (await receive(sockets[0], "error"))["code"] == "duplicate_evaluation"
    await sockets[2].send_to(text_data=json.dumps({**message, "accuracy": 2}))
    assert (await receive(sockets[2], "error"))["code"] == "bad_accuracy"
    await sockets[2].send_to(text_data=json.dumps({"type": "status"}))  # the connection stays open
    assert (await receive(sockets[2], "status"))["round"] == 2
    assert (await sync_to_async(_peer_metrics)(1))[2] == 50
    await close_all(sockets + [outsider])
