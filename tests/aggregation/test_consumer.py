"""The federated consumer over an in-process WebSocket: welcome, rounds, aggregation, and every refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from aggregation.models import Contribution, Round
from aggregation.weights import version_vector
from disco_client.codec import decode_weights, encode_weights
from tasks.models import ModelVersion
from tasks.versions import create_version
from tests.aggregation.websockets import connect as connect_to
from tests.aggregation.websockets import receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_modes]


@pytest.fixture
def fed_task(make_task, tiny_artifacts):
    # No share cap: these tests check FedAvg's sample weighting itself (test_lying.py checks the cap).
    task = make_task("fed", min_participants=2, max_contribution_share=1.0)
    create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    assert task.current_version.weight_specs  # cached now: async tests may read it without a query
    return task


def update_frame(task, *, fill: float | None = None, vector=None, samples=10, round_number=1, base=1,
                 task_id: str | None = None, encoding: str = "float32"):
    specs = task.current_version.weight_specs
    sizes = [int(np.prod(s["shape"])) for s in specs]
    flat = np.full(sum(sizes), fill, np.float32) if vector is None else np.asarray(vector, np.float32)
    tensors, start = [], 0
    for spec, size in zip(specs, sizes, strict=True):
        tensors.append((spec["name"], flat[start:start + size].reshape(spec["shape"])))
        start += size
    header = {"type": "update", "task": task_id or task.pk, "round": round_number, "baseVersion": base,
              "samples": samples}
    return encode_weights(header, tensors, encoding)


async def connect(task_id="fed", query="", **options):
    return await connect_to(f"/ws/federated/{task_id}/{query}", **options)


async def test_welcome_says_where_the_round_stands(fed_task):
    ws = await connect()
    welcome = await receive(ws, "welcome")
    assert welcome["round"] == 1 and welcome["currentVersion"] == 1 and welcome["participants"] == 1
    assert welcome["waitingFor"] == 1 and welcome["minParticipants"] == 2 and welcome["resumeToken"]
    await ws.send_to(text_data=json.dumps({"type": "status"}))
    assert (await receive(ws, "status"))["round"] == 1
    await ws.disconnect()


async def test_unknown_task_is_refused_and_closed(fed_task):
    ws = await connect("nope")
    error = json.loads(await ws.receive_from())
    assert error["type"] == "error" and error["code"] == "unknown_task" and "/api/tasks/" in error["reason"]
    assert (await ws.receive_output())["type"] == "websocket.close"


async def test_a_round_closes_when_everyone_contributed_and_everyone_gets_the_mean(fed_task):
    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    rng = np.random.default_rng(0)
    size = sum(int(np.prod(s["shape"])) for s in fed_task.current_version.weight_specs)
    va, vb = rng.normal(size=size), rng.normal(size=size)
    await a.send_to(bytes_data=update_frame(fed_task, vector=va, samples=10))
    assert (await receive(a, "accepted"))["round"] == 1
    await b.send_to(bytes_data=update_frame(fed_task, vector=vb, samples=30))
    closed_a, closed_b = await receive(a, "round_closed"), await receive(b, "round_closed")
    assert closed_a == closed_b
    assert closed_a["round"] == 1 and closed_a["version"] == 2 and closed_a["nextRound"] == 2
    assert closed_a["modelUrl"] == "/tasks/fed/versions/2/model.json"
    await sync_to_async(check_first_round)(fed_task, va, vb)
    await a.disconnect()
    await b.disconnect()


def check_first_round(task, va, vb):
    new = ModelVersion.objects.get(task=task, number=2)
    expected = (0.25 * va.astype(np.float32) + 0.75 * vb.astype(np.float32)).astype(np.float32)
    np.testing.assert_allclose(version_vector(new), expected, rtol=1e-6, atol=1e-6)
    assert new.origin == "round" and new.round_number == 1 and new.parent.number == 1
    task.refresh_from_db()
    assert task.current_version == new
    assert list(Round.objects.filter(task=task).values_list("number", "status")) == [(2, "open"), (1, "closed")]


def _state(task):
    return (list(Round.objects.filter(task=task).values_list("number", "status")),
            Contribution.objects.count(), list(ModelVersion.objects.filter(task=task).values_list("number", "sha256")))


@pytest.mark.parametrize(("frame", "code", "words"), [
    (lambda t: b"\x00\x01\x02", "bad_update", "4-byte header length"),
    (lambda t: bytes(np.random.default_rng(1).integers(0, 255, 300, dtype=np.uint8)), "bad_update", "header"),
    (lambda t: update_frame(t, fill=0.5)[:40], "bad_update", "header claims"),
    (lambda t: update_frame(t, fill=0.5)[:-8], "bad_update", "payload has"),
    (lambda t: encode_weights({"type": "update", "task": "fed", "round": 1, "baseVersion": 1, "samples": 1},
                              [("w", np.zeros((3, 4), np.float32))]), "bad_update", "tensors but the model has"),
    (lambda t: update_frame(t, fill=np.nan), "bad_update", "NaN or infinite"),
    (lambda t: update_frame(t, fill=0.5, round_number=7), "stale_round", "Round 7 is not open"),
    (lambda t: update_frame(t, fill=0.5, base=9), "stale_round", "trained from version 9"),
    (lambda t: update_frame(t, fill=0.5, samples=0), "bad_samples", "samples >= 1"),
    (lambda t: update_frame(t, fill=0.5, task_id="other"), "wrong_task", "names 'other'"),
    (lambda t: update_frame(t, fill=0.5, encoding="int8"), "compression", "takes updates as float32"),
    (lambda t: update_frame(t, fill=0.5, encoding="float16"), "compression", "this one is float16"),
])
async def test_bad_updates_get_an_error_and_change_nothing(fed_task, frame, code, words):
    ws = await connect()
    await receive(ws, "welcome")
    before = await sync_to_async(_state)(fed_task)
    await ws.send_to(bytes_data=frame(fed_task))
    error = await receive(ws, "error")
    assert error["code"] == code and words in error["reason"], error
    assert await sync_to_async(_state)(fed_task) == before
    await ws.send_to(text_data=json.dumps({"type": "status"}))  # the connection is still usable
    assert (await receive(ws, "status"))["contributed"] == 0
    await ws.disconnect()


async def test_an_int8_task_says_so_in_its_welcome_and_aggregates_int8_and_exact_updates(fed_task):
    await sync_to_async(type(fed_task).objects.filter(pk=fed_task.pk).update)(compression="int8")
    a, b = await connect(), await connect()
    assert (await receive(a, "welcome"))["compression"] == "int8"
    await receive(b, "welcome")
    size = sum(int(np.prod(s["shape"])) for s in fed_task.current_version.weight_specs)
    rng = np.random.default_rng(5)
    va, vb = rng.normal(size=size).astype(np.float32), rng.normal(size=size).astype(np.float32)
    int8_frame = update_frame(fed_task, vector=va, samples=10, encoding="int8")
    exact_frame = update_frame(fed_task, vector=vb, samples=30)  # more exact than asked: accepted
    await a.send_to(bytes_data=int8_frame)
    await receive(a, "accepted")
    await b.send_to(bytes_data=exact_frame)
    assert (await receive(a, "round_closed"))["version"] == 2
    sent = decode_weights(int8_frame).vector  # what the int8 frame carries: va within half a step per tensor
    new = await sync_to_async(lambda: version_vector(ModelVersion.objects.get(task=fed_task, number=2)))()
    np.testing.assert_allclose(new, 0.25 * sent + 0.75 * vb, rtol=1e-6, atol=1e-6)
    assert np.abs(sent - va).max() <= np.abs(va).max() / 127 / 2 + 1e-7
    await a.disconnect()
    await b.disconnect()


async def test_oversized_update_is_refused(fed_task, settings):
    settings.DISCO_MAX_MODEL_BYTES = 10
    ws = await connect()
    await receive(ws, "welcome")
    await ws.send_to(bytes_data=update_frame(fed_task, fill=0.5) + b"\0" * 70_000)
    assert "over this task's limit" in (await receive(ws, "error"))["reason"]
    await ws.disconnect()


async def test_duplicate_updates_and_unknown_messages(fed_task):
    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    await a.send_to(bytes_data=update_frame(fed_task, fill=1.0))
    await receive(a, "accepted")
    await a.send_to(bytes_data=update_frame(fed_task, fill=2.0))
    assert (await receive(a, "error"))["code"] == "duplicate"
    await a.send_to(text_data="not json")
    assert (await receive(a, "error"))["code"] == "bad_json"
    await a.send_to(text_data=json.dumps({"type": "dance"}))
    assert (await receive(a, "error"))["code"] == "unknown_type"
    await a.disconnect()
    await b.disconnect()


async def test_a_dropout_does_not_stall_the_round_and_a_participant_can_resume(fed_task):
    fed_task.min_participants = 1
    await sync_to_async(fed_task.save)()
    a, b = await connect(), await connect()
    welcome_a = await receive(a, "welcome")
    await receive(b, "welcome")
    await a.send_to(bytes_data=update_frame(fed_task, fill=1.0))
    await receive(a, "accepted")
    await b.disconnect()  # b drops out: everyone still connected has contributed
    closed = await receive(a, "round_closed")
    assert closed["version"] == 2 and closed["contributors"] == 1
    await a.disconnect()
    again = await connect(resume=welcome_a["resumeToken"])
    welcome = await receive(again, "welcome")
    assert welcome["resumed"] and welcome["participantId"] == welcome_a["participantId"]
    assert welcome["round"] == 2 and welcome["currentVersion"] == 2  # late (re)joiners start from the newest
    await again.disconnect()


# --- Updates announced with update_begin and sent in parts (aggregation/incoming.py) --------------
@pytest.fixture
def spool(settings, tmp_path):
    """Where parts are spooled; every test checks nothing is left behind."""
    directory = tmp_path / "spool"
    directory.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(directory)
    return directory


def announce(frame: bytes) -> str:
    return json.dumps({"type": "update_begin", "bytes": len(frame)})


async def send_parts(ws, frame: bytes, start: int = 0, part: int = 64) -> None:
    for offset in range(start, len(frame), part):
        await ws.send_to(bytes_data=frame[offset:offset + part])


async def send_in_parts(ws, frame: bytes, part: int = 64, announce: object = None) -> None:
    await ws.send_to(text_data=json.dumps({"type": "update_begin", "bytes": len(frame) if announce is None
                                           else announce}))
    await send_parts(ws, frame, part=part)


async def test_an_update_sent_in_parts_counts_like_one_sent_whole(fed_task, spool):
    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    rng = np.random.default_rng(3)
    size = sum(int(np.prod(s["shape"])) for s in fed_task.current_version.weight_specs)
    va, vb = rng.normal(size=size), rng.normal(size=size)
    frame = update_frame(fed_task, vector=va, samples=10)
    assert len(frame) > 3 * 64
    await send_in_parts(a, frame, part=64)
    assert (await receive(a, "accepted"))["round"] == 1
    await b.send_to(bytes_data=update_frame(fed_task, vector=vb, samples=30))
    await receive(a, "round_closed")
    await sync_to_async(check_first_round)(fed_task, va, vb)
    stored = await sync_to_async(lambda: Contribution.objects.order_by("samples").first().nbytes)()
    assert stored == len(frame)
    assert list(spool.iterdir()) == []
    await a.disconnect()
    await b.disconnect()


@pytest.mark.parametrize(("announce", "extra", "words"), [
    (10**12, b"", "over this task's limit"),
    ("many", b"", "needs 'bytes'"),
    (None, b"\0" * 8, "more than the"),
])
async def test_bad_announcements_and_parts_get_an_error_and_change_nothing(fed_task, spool, announce, extra, words):
    ws = await connect()
    await receive(ws, "welcome")
    before = await sync_to_async(_state)(fed_task)
    frame = update_frame(fed_task, fill=0.5)
    await send_in_parts(ws, frame + extra, announce=len(frame) if announce is None else announce)
    error = await receive(ws, "error")
    assert error["code"] == "bad_update" and words in error["reason"], error
    await ws.send_to(text_data=json.dumps({"type": "status"}))
    status = json.loads(await ws.receive_from())  # the refused parts were dropped without more replies
    assert status["type"] == "status" and status["contributed"] == 0, status
    assert await sync_to_async(_state)(fed_task) == before
    assert list(spool.iterdir()) == []
    await ws.disconnect()


async def test_a_nan_update_in_parts_is_refused_after_its_last_part(fed_task, spool):
    ws = await connect()
    await receive(ws, "welcome")
    before = await sync_to_async(_state)(fed_task)
    await send_in_parts(ws, update_frame(fed_task, fill=np.nan))
    assert "NaN or infinite" in (await receive(ws, "error"))["reason"]
    assert await sync_to_async(_state)(fed_task) == before
    assert list(spool.iterdir()) == []
    await ws.disconnect()


async def test_a_new_announcement_or_leaving_discards_an_unfinished_update(fed_task, spool):
    ws = await connect()
    await receive(ws, "welcome")
    frame = update_frame(fed_task, fill=0.25)
    await ws.send_to(text_data=json.dumps({"type": "update_begin", "bytes": len(frame)}))
    await ws.send_to(bytes_data=frame[:100])
    await send_in_parts(ws, frame)  # announced again: the first 100 bytes are forgotten
    assert (await receive(ws, "accepted"))["round"] == 1
    await ws.send_to(text_data=json.dumps({"type": "update_begin", "bytes": len(frame)}))
    await ws.send_to(bytes_data=frame[:100])
    await ws.send_to(text_data=json.dumps({"type": "status"}))
    await receive(ws, "status")
    assert len(list(spool.iterdir())) == 1
    await ws.disconnect()
    assert list(spool.iterdir()) == []


async def test_an_update_is_checked_against_the_round_open_at_its_announcement(fed_task, spool):
    """Announcements use this process's recent answer to "which round is open" (consumers.OPEN_ROUNDS), not a
    query each: a round that closed while the parts arrived still refuses the update, and the answer is dropped."""
    from aggregation.consumers import OPEN_ROUNDS

    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    frame = update_frame(fed_task, fill=0.25)
    await a.send_to(text_data=json.dumps({"type": "update_begin", "bytes": len(frame)}))
    await a.send_to(bytes_data=frame[:100])
    await a.send_to(text_data=json.dumps({"type": "status"}))
    await receive(a, "status")
    announced = OPEN_ROUNDS.get("fed")
    assert announced is not None and announced.number == 1
    # Round 1 ends behind the announcement's back (as if another web process had closed it).
    await sync_to_async(Round.objects.filter(pk=announced.pk).update)(status=Round.Status.AGGREGATING)
    for start in range(100, len(frame), 64):
        await a.send_to(bytes_data=frame[start:start + 64])
    error = await receive(a, "error")
    assert error["code"] == "stale_round" and "Round 1 closed while the update arrived" in error["reason"]
    assert OPEN_ROUNDS.get("fed") is None  # asked afresh next time
    assert await sync_to_async(Contribution.objects.count)() == 0 and list(spool.iterdir()) == []
    await a.disconnect()
    await b.disconnect()


async def test_an_update_for_another_round_than_announced_is_checked_against_the_open_one(fed_task, spool):
    from aggregation.consumers import OPEN_ROUNDS

    ws = await connect()
    await receive(ws, "welcome")
    opened = await sync_to_async(Round.objects.select_related("base_version").get)(task_id="fed", number=1)
    OPEN_ROUNDS.put("fed", opened)
    await sync_to_async(Round.objects.filter(pk=opened.pk).update)(number=7)  # the open round is now "7"
    await send_in_parts(ws, update_frame(fed_task, fill=0.25, round_number=7))
    assert (await receive(ws, "accepted"))["round"] == 7  # not refused against the remembered "round 1"
    await ws.disconnect()


async def test_an_announcement_larger_than_the_model_is_refused(fed_task, spool):
    ws = await connect()
    await receive(ws, "welcome")
    frame = update_frame(fed_task, fill=0.5)
    await ws.send_to(text_data=json.dumps({"type": "update_begin", "bytes": len(frame) + 100_000}))
    error = await receive(ws, "error")
    assert error["code"] == "bad_update" and "over this task's limit" in error["reason"]
    assert "the round's model as float32 weights plus a header" in error["reason"]
    assert list(spool.iterdir()) == []
    await ws.disconnect()


async def test_a_tasks_unfinished_updates_are_bounded_and_released(fed_task, spool, settings):
    from aggregation.incoming import SPOOL_BUDGET

    frame = update_frame(fed_task, fill=0.5)
    settings.DISCO_MAX_SPOOLED_BYTES_PER_TASK = len(frame) * 3 // 2
    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    await a.send_to(text_data=json.dumps({"type": "update_begin", "bytes": len(frame)}))
    await a.send_to(bytes_data=frame[:100])  # a's update is in flight and holds its announced size
    await a.send_to(text_data=json.dumps({"type": "status"}))
    await receive(a, "status")  # a's connection handles messages in order: its announcement is in place
    await b.send_to(text_data=json.dumps({"type": "update_begin", "bytes": len(frame)}))
    for start in range(0, len(frame), 64):  # b sends its parts anyway: they are dropped, not spooled
        await b.send_to(bytes_data=frame[start:start + 64])
    error = await receive(b, "error")
    assert error["code"] == "spool_full"
    assert "would pass the limit" in error["reason"] and "DISCO_MAX_SPOOLED_BYTES_PER_TASK" in error["reason"]
    assert "announce your update again" in error["reason"]
    await b.send_to(text_data=json.dumps({"type": "status"}))
    while (reply := json.loads(await b.receive_from()))["type"] != "status":
        assert reply["type"] == "participants", reply  # no reply per dropped part
    assert len(list(spool.iterdir())) == 1  # only a's file
    await a.disconnect()  # a leaves: its file is removed and its bytes released
    assert list(spool.iterdir()) == [] and SPOOL_BUDGET.reserved("fed") == 0
    await send_in_parts(b, frame)
    assert (await receive(b, "accepted"))["round"] == 1
    assert list(spool.iterdir()) == [] and SPOOL_BUDGET.reserved("fed") == 0
    await b.disconnect()


# --- Upload slots (aggregation/upload_slots.py): large updates are sent when the server says so -----------
async def next_reply(ws) -> dict:
    """The next message other than a ``participants`` broadcast."""
    while (reply := json.loads(await ws.receive_from()))["type"] == "participants":
        pass
    return reply


async def test_announced_updates_are_sent_one_slot_at_a_time_in_the_order_announced(fed_task, spool, settings):
    settings.DISCO_UPLOAD_SLOTS = 1
    a, b = await connect(), await connect()
    assert (await receive(a, "welcome"))["announceFrom"] == settings.DISCO_ANNOUNCE_FROM_BYTES
    await receive(b, "welcome")
    fa, fb = update_frame(fed_task, fill=0.25), update_frame(fed_task, fill=0.75)
    await a.send_to(text_data=announce(fa))
    assert await next_reply(a) == {"type": "update_go", "bytes": len(fa)}
    await b.send_to(text_data=announce(fb))
    await b.send_to(text_data=json.dumps({"type": "status"}))
    assert (await next_reply(b))["type"] == "status"  # b waits: a holds the only slot
    await send_parts(a, fa)
    assert (await next_reply(a))["type"] == "accepted"
    assert await next_reply(b) == {"type": "update_go", "bytes": len(fb)}  # a's upload ended: b's turn
    await send_parts(b, fb)
    assert (await receive(b, "accepted"))["round"] == 1
    await receive(a, "round_closed")
    assert list(spool.iterdir()) == []
    await a.disconnect()
    await b.disconnect()


async def test_a_granted_upload_that_sends_nothing_gives_its_slot_up(fed_task, spool, settings):
    from aggregation.upload_slots import UPLOAD_SLOTS

    settings.DISCO_UPLOAD_SLOTS, settings.DISCO_UPLOAD_IDLE_SECONDS = 1, 0.2
    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    fa, fb = update_frame(fed_task, fill=0.25), update_frame(fed_task, fill=0.75)
    await a.send_to(text_data=announce(fa))
    await receive(a, "update_go")
    await a.send_to(bytes_data=fa[:100])  # then a stalls
    await b.send_to(text_data=announce(fb))
    error = await receive(a, "error")
    assert error["code"] == "upload_timeout" and "Announce it again" in error["reason"], error
    assert (await receive(b, "update_go"))["bytes"] == len(fb)
    await send_parts(a, fa, start=100)  # a's late parts are dropped without a reply each
    await a.send_to(text_data=json.dumps({"type": "status"}))
    assert (await next_reply(a))["type"] == "status"
    await send_parts(b, fb)
    assert (await receive(b, "accepted"))["round"] == 1
    await a.send_to(text_data=announce(fa))  # a announces again and is served
    await receive(a, "update_go")
    await send_parts(a, fa)
    assert (await receive(a, "accepted"))["round"] == 1
    await receive(b, "round_closed")
    assert list(spool.iterdir()) == [] and not UPLOAD_SLOTS.holders and not UPLOAD_SLOTS.waiting
    await a.disconnect()
    await b.disconnect()


async def test_leaving_while_holding_or_waiting_for_a_slot_frees_it(fed_task, spool, settings):
    from aggregation.upload_slots import UPLOAD_SLOTS

    settings.DISCO_UPLOAD_SLOTS = 1
    a, b, c = await connect(), await connect(), await connect()
    for ws in (a, b, c):
        await receive(ws, "welcome")
    frame = update_frame(fed_task, fill=0.5)
    await a.send_to(text_data=announce(frame))
    await receive(a, "update_go")
    for ws in (b, c):
        await ws.send_to(text_data=announce(frame))
        await ws.send_to(text_data=json.dumps({"type": "status"}))
        await receive(ws, "status")
    assert len(UPLOAD_SLOTS.waiting) == 2
    await b.disconnect()  # left while waiting
    await a.disconnect()  # left holding the slot: it goes to c, not to b
    assert (await receive(c, "update_go"))["bytes"] == len(frame)
    await send_parts(c, frame)
    assert (await receive(c, "accepted"))["round"] == 1
    assert not UPLOAD_SLOTS.holders and not UPLOAD_SLOTS.waiting and list(spool.iterdir()) == []
    await c.disconnect()


async def test_an_update_waiting_for_its_slot_is_refused_when_its_round_ends(fed_task, spool, settings):
    """Announced for round 1, still waiting (or arriving) when round 1 ends: refused at once as stale, its slot
    freed, its late parts dropped; the client then syncs and trains from the new version."""
    from channels.layers import get_channel_layer

    from aggregation.rounds import group_name
    from aggregation.upload_slots import UPLOAD_SLOTS

    settings.DISCO_UPLOAD_SLOTS = 1
    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    frame = update_frame(fed_task, fill=0.5)
    await a.send_to(text_data=announce(frame))
    await receive(a, "update_go")
    await b.send_to(text_data=announce(frame))
    await b.send_to(text_data=json.dumps({"type": "status"}))
    await receive(b, "status")
    assert list(UPLOAD_SLOTS.waiting) and len(list(spool.iterdir())) == 2
    # Round 1 ends elsewhere (say the deadline, on another web process).
    await get_channel_layer().group_send(group_name("fed"), {
        "type": "round.closed", "round": 1, "result_version": 2, "version": 2, "next_round": 2,
        "contributors": 2, "invited": None})
    for ws in (a, b):
        error = await next_reply(ws)  # the refusal comes before the round's end
        if ws is b and error["type"] == "update_go":
            # a's consumer handled the event first and passed its slot on, before b's refused b's update
            error = await next_reply(ws)
        assert error["type"] == "error" and error["code"] == "stale_round", error
        assert "Round 1 closed while your update" in error["reason"]
        assert (await next_reply(ws))["type"] == "round_closed"
    assert not UPLOAD_SLOTS.holders and not UPLOAD_SLOTS.waiting and list(spool.iterdir()) == []
    await send_parts(a, frame)  # sent anyway: dropped without a reply each
    await a.send_to(text_data=json.dumps({"type": "status"}))
    assert (await next_reply(a))["type"] == "status"
    await a.disconnect()
    await b.disconnect()


async def test_a_large_update_sent_as_one_frame_is_spooled_before_it_is_checked(fed_task, spool, settings,
                                                                               monkeypatch):
    """A client that ignores ``announceFrom`` is still served: its frame goes to disk before it waits for the
    database, and is checked and stored (or refused) exactly as an announced one."""
    from aggregation import consumers

    spooled = []

    class Counting(consumers.IncomingUpdate):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            spooled.append(self.total_bytes)

    monkeypatch.setattr(consumers, "IncomingUpdate", Counting)
    frame = update_frame(fed_task, fill=0.25)
    settings.DISCO_ANNOUNCE_FROM_BYTES = len(frame)
    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    before = await sync_to_async(_state)(fed_task)
    await a.send_to(bytes_data=update_frame(fed_task, fill=np.nan))
    assert "NaN or infinite" in (await receive(a, "error"))["reason"]
    assert await sync_to_async(_state)(fed_task) == before and list(spool.iterdir()) == []
    await a.send_to(bytes_data=frame)
    assert (await receive(a, "accepted"))["round"] == 1
    await b.send_to(bytes_data=update_frame(fed_task, fill=0.75)[:len(frame) - 1])  # one byte short: in memory
    assert (await receive(b, "error"))["code"] == "bad_update"
    assert spooled == [len(frame), len(frame)]  # the NaN one and the good one, not the short one
    stored = await sync_to_async(lambda: Contribution.objects.get().nbytes)()
    assert stored == len(frame) and list(spool.iterdir()) == []
    await a.disconnect()
    await b.disconnect()


# --- Federated evaluation (aggregation/evaluations.py) -------------------------------------------
def _metrics(number: int) -> tuple:
    return Round.objects.filter(task_id="fed", number=number).values_list("val_loss", "val_accuracy",
                                                                          "val_samples").get()


def evaluation(**fields) -> str:
    return json.dumps({"type": "evaluation", "round": 1, "version": 2, "loss": 0.5, "accuracy": 0.5, "samples": 10,
                       **fields})


async def test_participants_report_on_the_rounds_result_and_the_round_keeps_the_weighted_mean(fed_task):
    a, b = await connect(), await connect()
    await receive(a, "welcome")
    await receive(b, "welcome")
    await a.send_to(text_data=evaluation())
    early = await receive(a, "error")  # round 1 is still open: there is nothing to evaluate yet
    assert early["code"] == "round_not_finished" and early["about"] == "evaluation"
    await a.send_to(bytes_data=update_frame(fed_task, fill=1.0))
    await b.send_to(bytes_data=update_frame(fed_task, fill=2.0))
    closed = await receive(a, "round_closed")
    await receive(b, "round_closed")
    assert (closed["round"], closed["version"], closed["resultVersion"]) == (1, 2, 2)
    await a.send_to(text_data=evaluation(loss=1.0, accuracy=0.25, samples=10))
    assert await receive(a, "evaluation_recorded") == {"type": "evaluation_recorded", "round": 1, "version": 2,
                                                      "samples": 10}
    await b.send_to(text_data=evaluation(loss=0.2, accuracy=0.75, samples=30))
    assert (await receive(b, "evaluation_recorded"))["samples"] == 30
    loss, accuracy, samples = await sync_to_async(_metrics)(1)
    assert samples == 40 and np.isclose(loss, (1.0 * 10 + 0.2 * 30) / 40) and np.isclose(accuracy, 0.625)
    # Refusals are error frames with a code; the connection stays open and nothing changes.
    await a.send_to(text_data=evaluation(loss=3.0))
    assert (await receive(a, "error"))["code"] == "duplicate_evaluation"
    await b.send_to(text_data=json.dumps({"type": "evaluation", "round": 1, "version": 1, "loss": 0.1,
                                          "accuracy": None, "samples": 5}))
    assert (await receive(b, "error"))["code"] == "wrong_version"
    await b.send_to(text_data='{"type": "evaluation", "round": 1, "version": 2, "loss": NaN, "samples": 5}')
    assert (await receive(b, "error"))["code"] == "bad_loss"
    await b.send_to(text_data=json.dumps({"type": "status"}))
    assert (await receive(b, "status"))["round"] == 2
    assert await sync_to_async(_metrics)(1) == (loss, accuracy, 40)
    await a.disconnect()
    await b.disconnect()
