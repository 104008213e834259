"""The federated WebSocket consumer at ``/ws/federated/<task>/``.

Thin by design: decode, call one ``aggregation.rounds`` function per message, reply; every
broadcast to the task's group comes from ``rounds``, after its transaction commits. Control
messages are JSON text frames; updates are binary frames in the format of ``disco_client.codec``: one frame, or
announced by ``update_begin`` and sent in parts that are spooled to disk as they arrive
(``aggregation.incoming``). A bad message gets an ``error`` frame with a reason and the
connection stays open. The handshake and the first message (``join``) are
``aggregation.admission``'s: an unknown task, a participation rule the connection does not
meet and a full task close it, with an ``error`` frame saying why first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile, File

from disco_client.codec import CodecError, decode_weights, read_header
from tasks.models import Task

from . import evaluations, rounds
from .admission import CLOSE_UNKNOWN_TASK, AdmittingConsumer
from .broadcast import PARTICIPANT_NEWS
from .incoming import IncomingUpdate
from .models import Participant, Round
from .upload_slots import UPLOAD_SLOTS

log = logging.getLogger(__name__)


def _find_task(task_id: str) -> Task | None:
    return Task.objects.filter(pk=task_id, published=True, scheme="federated").select_related("current_version").first()


def _welcome(task: Task, resume_token: str, kind: str, address: str | None) -> tuple[Participant, dict[str, Any]]:
    participant, resumed, state = rounds.enter(task, resume_token=resume_token, kind=kind, address=address,
                                               announce=False)  # the consumer tells the group, coalesced
    return participant, {"type": "welcome", "participantId": str(participant.pk),
                         "resumeToken": participant.resume_token, "resumed": resumed,
                         "compression": task.compression, "announceFrom": settings.DISCO_ANNOUNCE_FROM_BYTES,
                         **state.fields(),
                         "invited": state.invited_for(participant.pk)}


class OpenRounds:
    """This process's recent answer to "which round of task T is open", for ``update_begin``.

    Every update is announced, and in a burst of hundreds the lookups would queue behind the updates being
    stored on the process's one database thread, while each announcer's parts pile up in memory unread (at
    500 participants daphne held every update at once). An answer is used for at most ``TTL`` seconds and
    dropped as soon as this process hears the round closed or failed, or an update is refused as stale; it
    only sizes the spool and names the round an update is checked against: ``rounds.submit`` still checks,
    under the round's lock, that the round is open.
    """

    TTL = 1.0

    def __init__(self) -> None:
        self._rounds: dict[str, tuple[float, Round]] = {}

    def get(self, task_id: str) -> Round | None:
        found = self._rounds.get(task_id)
        if found is None or time.monotonic() - found[0] > self.TTL:
            return None
        return found[1]

    def put(self, task_id: str, rnd: Round) -> None:
        self._rounds[task_id] = (time.monotonic(), rnd)

    def forget(self, task_id: str) -> None:
        self._rounds.pop(task_id, None)

    def clear(self) -> None:
        self._rounds.clear()


OPEN_ROUNDS = OpenRounds()


def _submit(participant: Participant, content: File, data: Any, rnd: Round | None = None) -> dict[str, Any]:
    """Validate the weight message ``data`` (bytes or a memory map of ``content``) and store ``content``.

    ``rnd`` is the round that was open when the update was announced (``update_begin``), else it is looked up:
    an update is checked against the round it was sent for, and ``rounds.submit`` refuses it if that round
    closed meanwhile."""
    task = participant.task
    if rnd is not None and _claimed_round(data) != rnd.number:
        rnd = None  # sent for another round than the one announced: checked against the open one
    rnd = rnd or rounds.active_round(task)
    message = decode_weights(data, max_bytes=rounds.max_frame_bytes(), expected=rounds.expected_specs(rnd))
    contribution = rounds.submit(participant, message, content, rnd)
    reply = {"type": "accepted", "round": rnd.number, "samples": contribution.samples}
    if contribution.samples != message.header["samples"]:
        reply["note"] = (f"Counted as {contribution.samples} samples, this task's limit (maxSamplesPerUpdate); "
                         f"the update claimed {message.header['samples']}.")
    return reply


def _claimed_round(data: Any) -> Any:
    """The round an update's header names (None if the header cannot be read: decoding then says why)."""
    try:
        return read_header(data)[0].get("round")
    except CodecError:
        return None


def _submit_spooled(participant: Participant, incoming: IncomingUpdate, rnd: Round) -> dict[str, Any]:
    try:
        return _submit(participant, incoming.file, incoming.message_bytes(), rnd)
    finally:
        incoming.discard()


class FederatedConsumer(AdmittingConsumer):
    """One participant's connection to one federated task."""

    scheme = "federated"
    incoming: IncomingUpdate | None = None
    incoming_round: Round | None = None  # the round open when ``incoming`` was announced
    # After a refused announcement its parts are dropped without a reply each: until the
    # announced size has passed, or (no usable size) until the next text frame.
    skip_bytes: int = 0

    find_task = staticmethod(_find_task)
    join = staticmethod(_welcome)

    async def connect(self) -> None:
        """Admit the connection (task, participation rule); the participant joins with its first message."""
        await self.admit_connection()

    async def _join(self, text_data: str | None) -> None:
        try:
            welcome = await self.admit_participant(text_data)
        except rounds.RoundError as exc:
            await self.send_error(exc.code, str(exc))
            await self.close(code=CLOSE_UNKNOWN_TASK)
            return
        if welcome is None:
            return
        await self.channel_layer.group_add(rounds.group_name(self.task.pk), self.channel_name)
        await self.send(text_data=json.dumps(welcome))
        self._participants_changed()

    def _participants_changed(self) -> None:
        """The task's group hears how many take part, within ``PARTICIPANT_NEWS.window`` (one message for a
        burst of joins or departures, not one each)."""
        task_id = self.task.pk
        PARTICIPANT_NEWS.changed(rounds.group_name(task_id),
                                 lambda: database_sync_to_async(rounds.participants_event)(task_id))

    async def disconnect(self, code: int) -> None:
        self.stop_join_timer()
        self._drop_incoming()
        if self.task is None or self.participant is None:
            return
        await self.channel_layer.group_discard(rounds.group_name(self.task.pk), self.channel_name)
        await database_sync_to_async(rounds.leave)(self.participant, announce=False)
        self._participants_changed()

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """A binary frame is taken out of ``message`` (``_receive_binary`` then holds its only reference, so it
        can let go of a frame once spooled); text frames go to ``receive``."""
        if message.get("text") is None and message.get("bytes") is not None and self.participant is not None:
            await self._receive_binary(message)
        else:
            await super().websocket_receive(message)

    async def _receive_binary(self, message: dict[str, Any]) -> None:
        size = len(message["bytes"])
        if self.skip_bytes > 0:
            self.skip_bytes = max(0, self.skip_bytes - size)
        elif self.incoming is not None:
            await self._receive_part(message.pop("bytes"))
        elif size >= settings.DISCO_ANNOUNCE_FROM_BYTES:
            await self._receive_whole(message)
        else:
            frame = message.pop("bytes")
            await self._submit_update(_submit, self.participant, ContentFile(frame), frame)

    async def _receive_whole(self, message: dict[str, Any]) -> None:
        """A large update sent as one frame is written to a spool file off the event loop's thread, and the frame
        let go, before the update waits its turn on this process's one database thread: in a burst of hundreds of
        updates that wait is where a web process's memory went (at 500 participants it held every update at once).
        What the spool cannot take (over its budget, no open round) goes the in-memory way, which refuses or
        stores it exactly as before."""
        frame: bytes = message.pop("bytes")  # the only reference left, so ``del frame`` frees it
        try:
            incoming, rnd = await self._spool(len(frame))
        except (CodecError, rounds.RoundError):
            await self._submit_update(_submit, self.participant, ContentFile(frame), frame)
            return
        try:
            await sync_to_async(incoming.append, thread_sensitive=False)(frame)
        except BaseException:
            incoming.discard()
            raise
        del frame
        await self._submit_update(_submit_spooled, self.participant, incoming, rnd)

    async def _spool(self, nbytes: Any) -> tuple[IncomingUpdate, Round]:
        """A spool file for an update of ``nbytes`` bytes, and the round open now (as this process last saw it)."""
        rnd = OPEN_ROUNDS.get(self.task.pk)
        if rnd is None:
            rnd = await database_sync_to_async(rounds.active_round)(self.task)
            OPEN_ROUNDS.put(self.task.pk, rnd)
        return IncomingUpdate(nbytes, max_bytes=rounds.max_update_bytes(rnd), task_id=self.task.pk), rnd

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.task is None:
            return
        if self.participant is None:
            await self._join(text_data)
            return
        # After joining, binary frames go to ``_receive_binary`` (``websocket_receive``): this is a text frame.
        self.skip_bytes = 0
        try:
            message = json.loads(text_data or "")
        except json.JSONDecodeError:
            await self.send_error("bad_json", "Text frames must be JSON objects such as {\"type\": \"status\"}.")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "status":
            state = await database_sync_to_async(rounds.status)(self.task)
            await self.send(text_data=json.dumps({"type": "status", **state.fields(),
                                                  "invited": state.invited_for(self.participant.pk)}))
        elif kind == "evaluation":
            await self._evaluation(message)
        elif kind == "update_begin":
            self._drop_incoming()  # one update in flight per connection
            announced = message.get("bytes")
            try:
                self.incoming, self.incoming_round = await self._spool(announced)
                UPLOAD_SLOTS.request(self, self._grant_upload)
            except (CodecError, rounds.RoundError) as exc:
                usable = isinstance(announced, int) and not isinstance(announced, bool) and announced > 0
                self.skip_bytes = announced if usable else sys.maxsize
                await self.send_error(getattr(exc, "code", "bad_update"), str(exc))
        else:
            await self.send_error("unknown_type", f"Unknown message type {kind!r}; send 'status', 'evaluation' or "
                                                  "'update_begin' as text, and updates as binary frames.")

    async def _evaluation(self, message: dict[str, Any]) -> None:
        """A participant's scores of a finished round's model (``aggregation.evaluations``)."""
        try:
            reply = await database_sync_to_async(evaluations.record)(self.participant, message)
        except evaluations.EvaluationError as exc:
            reply = evaluations.refusal(exc)
        await self.send(text_data=json.dumps(reply))

    async def _receive_part(self, part: bytes) -> None:
        incoming = self.incoming
        self._stop_upload_timer()  # not while a part is written
        try:
            await sync_to_async(incoming.append, thread_sensitive=False)(part)
        except CodecError as exc:
            self.incoming = None
            self._end_upload()
            await self.send_error("bad_update", str(exc))
            return
        if incoming.complete:
            self.incoming = None
            self._end_upload()
            await self._submit_update(_submit_spooled, self.participant, incoming, self.incoming_round)
        elif self in UPLOAD_SLOTS.holders:
            self._start_upload_timer()

    def _drop_incoming(self) -> None:
        """Forget an update whose parts are still arriving (a new one was announced, or the client left)."""
        if self.incoming is not None:
            self.incoming.discard()
            self.incoming = None
        self._end_upload()

    # Upload slots (aggregation.upload_slots): the announced update is sent when this process says so.
    _upload_timer: asyncio.TimerHandle | None = None

    def _grant_upload(self) -> None:
        """Called by ``UPLOAD_SLOTS`` on this process's event loop, now or when another upload frees a slot (an
        upload that ends or is dropped leaves the slots in the same step, so ``incoming`` is this one's)."""
        self._start_upload_timer()
        self._in_background(self.send(text_data=json.dumps({"type": "update_go", "bytes": self.incoming.total_bytes})))

    def _start_upload_timer(self) -> None:
        self._stop_upload_timer()
        self._upload_timer = asyncio.get_running_loop().call_later(settings.DISCO_UPLOAD_IDLE_SECONDS,
                                                                   self._upload_stalled)

    def _stop_upload_timer(self) -> None:
        if self._upload_timer is not None:
            self._upload_timer.cancel()
            self._upload_timer = None

    def _end_upload(self) -> None:
        self._stop_upload_timer()
        UPLOAD_SLOTS.release(self)

    def _upload_stalled(self) -> None:
        """A granted upload sent nothing for the idle time: it gives its slot up (its late parts are dropped)."""
        self._upload_timer = None
        incoming = self.incoming
        if incoming is None:
            return
        self.skip_bytes = incoming.total_bytes - incoming.received
        self._drop_incoming()
        seconds = settings.DISCO_UPLOAD_IDLE_SECONDS
        self._in_background(self.send_error(
            "upload_timeout", f"No part of the announced update arrived for {seconds:g} s after 'update_go' or its "
                              "last part: the upload was dropped so that others could send theirs. Announce it again "
                              "('update_begin') and send it when the server says 'update_go'."))

    async def _round_ended(self, number: Any) -> None:
        """Round ``number`` ended: an update announced for it, still waiting for its slot or arriving, is refused
        now (it can no longer count) rather than after its last byte, and its slot goes to the next. The refusal
        goes before the round's end is told."""
        incoming = self.incoming
        if incoming is None or self.incoming_round is None or self.incoming_round.number != number:
            return
        self.skip_bytes = incoming.total_bytes - incoming.received
        self._drop_incoming()
        await self.send_error("stale_round", f"Round {number} closed while your update for it was waiting to be sent "
                                             "or arriving: it cannot count. Fetch the current model and train from it.")

    def _in_background(self, coroutine: Any) -> None:
        """Run ``coroutine`` on this loop, keeping a reference until it ends (the loop keeps only a weak one)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background = getattr(self, "_background", set())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _submit_update(self, submit: Any, *args: Any) -> None:
        try:
            reply = await database_sync_to_async(submit)(*args)
        except (CodecError, rounds.RoundError) as exc:
            if getattr(exc, "code", None) == "stale_round":
                OPEN_ROUNDS.forget(self.task.pk)
            await self.send_error(getattr(exc, "code", "bad_update"), str(exc))
            return
        await self.send(text_data=json.dumps(reply))

    # Group events
    def _invited(self, event: dict[str, Any]) -> bool:
        """Whether this connection's participant is invited to the round the event names: the event carries
        the invited ids (None: everyone), and only this yes or no leaves the server."""
        return rounds.is_invited(event.get("invited"), self.participant.pk)

    async def round_closed(self, event: dict[str, Any]) -> None:
        """``version`` is what the next round starts from: the round's result, or, when the round was
        superseded (another version became current during it), the current version."""
        OPEN_ROUNDS.forget(self.task.pk)
        await self._round_ended(event["round"])
        message = {
            "type": "round_closed", "round": event["round"], "version": event["version"],
            "nextRound": event["next_round"], "contributors": event["contributors"],
            "modelUrl": f"/tasks/{self.task.pk}/versions/{event['version']}/model.json",
            "resultVersion": event.get("result_version", event["version"]),
            "invited": self._invited(event),  # to the next round
        }
        if event.get("superseded"):
            message.update(superseded=True, reason=event["reason"])
        await self.send(text_data=json.dumps(message))

    async def round_failed(self, event: dict[str, Any]) -> None:
        """The round wrote nothing; the next round starts from ``version`` (the last good one)."""
        OPEN_ROUNDS.forget(self.task.pk)
        await self._round_ended(event["round"])
        version = event["version"]
        await self.send(text_data=json.dumps({
            "type": "round_failed", "round": event["round"], "reason": event["reason"],
            "nextRound": event["next_round"], "version": version,
            "modelUrl": f"/tasks/{self.task.pk}/versions/{version}/model.json" if version is not None else None,
            "invited": self._invited(event),  # to the next round
        }))

    async def participants_changed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({**{k: v for k, v in event.items() if k not in ("type", "invited")},
                                              "type": "participants", "invited": self._invited(event)}))

    async def round_evaluated(self, event: dict[str, Any]) -> None:
        """For the round dashboard (``observers``); participants are not told the others' scores."""
