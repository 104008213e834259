"""The federated WebSocket consumer at ``/ws/federated/<task>/``.

Thin by design: decode, call ``aggregation.rounds``, reply. Control messages are JSON text
frames; updates are binary frames in the format of ``aggregation.codec``. A bad message
gets an ``error`` frame with a reason and the connection stays open; only an unknown
task closes it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from tasks.models import Task

from . import rounds
from .codec import CodecError, decode_weights
from .models import Participant

log = logging.getLogger(__name__)
CLOSE_UNKNOWN_TASK = 4404


def joining_identity(scope: dict[str, Any]) -> tuple[str, str]:
    """The resume token and client kind a connecting participant gives in its query string."""
    query = parse_qs(scope.get("query_string", b"").decode())
    resume = (query.get("resume") or [""])[0]
    kind = (query.get("client") or ["browser"])[0]
    return resume, kind if kind in Participant.Kind.values else Participant.Kind.BROWSER


def _find_task(task_id: str) -> Task | None:
    return Task.objects.filter(pk=task_id, published=True, scheme="federated").select_related("current_version").first()


def _welcome(task: Task, resume_token: str, kind: str) -> tuple[Participant, dict[str, Any]]:
    participant, resumed = rounds.join(task, resume_token=resume_token, kind=kind)
    state = rounds.status(task)
    return participant, {"type": "welcome", "participantId": str(participant.pk),
                         "resumeToken": participant.resume_token, "resumed": resumed, **_status_fields(state)}


def _status_fields(state: rounds.RoundStatus) -> dict[str, Any]:
    fields = asdict(state)
    return {"round": fields["round"], "currentVersion": fields["base_version"], "participants": fields["participants"],
            "contributed": fields["contributed"], "waitingFor": fields["waiting_for"],
            "minParticipants": fields["min_participants"], "deadline": fields["deadline"]}


def _submit(participant: Participant, frame: bytes) -> dict[str, Any]:
    task = participant.task
    rnd = rounds.active_round(task)
    message = decode_weights(frame, max_bytes=rounds.max_frame_bytes(), expected=rounds.expected_specs(rnd))
    rnd = rounds.submit(participant, message, frame, rnd)
    return {"type": "accepted", "round": rnd.number}


class FederatedConsumer(AsyncWebsocketConsumer):
    """One participant's connection to one federated task."""

    task: Task | None = None
    participant: Participant | None = None

    async def connect(self) -> None:
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        await self.accept()
        self.task = await database_sync_to_async(_find_task)(task_id)
        if self.task is None:
            await self.send_error("unknown_task", f"No published federated task with id '{task_id}'. "
                                                  "GET /api/tasks/ lists the available tasks.")
            await self.close(code=CLOSE_UNKNOWN_TASK)
            return
        resume, kind = joining_identity(self.scope)
        try:
            self.participant, welcome = await database_sync_to_async(_welcome)(self.task, resume, kind)
        except rounds.RoundError as exc:
            await self.send_error(exc.code, str(exc))
            await self.close(code=CLOSE_UNKNOWN_TASK)
            return
        await self.channel_layer.group_add(rounds.group_name(self.task.pk), self.channel_name)
        await self.send(text_data=json.dumps(welcome))
        await self._broadcast_participants()

    async def disconnect(self, code: int) -> None:
        if self.task is None or self.participant is None:
            return
        await self.channel_layer.group_discard(rounds.group_name(self.task.pk), self.channel_name)
        await database_sync_to_async(rounds.leave)(self.participant)
        await self._broadcast_participants()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.participant is None:
            return
        if bytes_data is not None:
            await self._receive_update(bytes_data)
            return
        try:
            message = json.loads(text_data or "")
        except json.JSONDecodeError:
            await self.send_error("bad_json", "Text frames must be JSON objects such as {\"type\": \"status\"}.")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "status":
            state = await database_sync_to_async(rounds.status)(self.task)
            await self.send(text_data=json.dumps({"type": "status", **_status_fields(state)}))
        else:
            await self.send_error("unknown_type", f"Unknown message type {kind!r}; send 'status' as text, or an "
                                                  "update as a binary frame.")

    async def _receive_update(self, frame: bytes) -> None:
        try:
            reply = await database_sync_to_async(_submit)(self.participant, frame)
        except (CodecError, rounds.RoundError) as exc:
            await self.send_error(getattr(exc, "code", "bad_update"), str(exc))
            return
        await self.send(text_data=json.dumps(reply))

    async def send_error(self, code: str, reason: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "code": code, "reason": reason}))

    async def _broadcast_participants(self) -> None:
        state = await database_sync_to_async(rounds.status)(self.task)
        await self.channel_layer.group_send(rounds.group_name(self.task.pk),
                                            {"type": "participants.changed", **_status_fields(state)})

    # Group events
    async def round_closed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({
            "type": "round_closed", "round": event["round"], "version": event["version"],
            "nextRound": event["next_round"], "contributors": event["contributors"],
            "modelUrl": f"/tasks/{self.task.pk}/versions/{event['version']}/model.json",
        }))

    async def participants_changed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({**{k: v for k, v in event.items() if k != "type"},
                                              "type": "participants"}))
