"""``/ws/observe/<task>/``: a read-only WebSocket for the round dashboard (owner and administrators).

It joins the task's channel groups (``rounds.group_name``, ``peer_rounds.group_name``) and forwards
each group event as ``{"type": "event", "event": "round_closed", "round": 3, ...}`` with the counts
and reasons only (no peer ids, keys or payloads). It never joins the task: no ``Participant`` row, no
``join`` message, so it counts towards no quorum and no cap. It reads nothing from the client.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from tasks.creation import can_edit
from tasks.models import Task

from . import peer_rounds, rounds
from .admission import CLOSE_REFUSED, CLOSE_UNKNOWN_TASK

# The event fields an observer sees; everything else (peer ids, public keys, frames) stays in the group.
FORWARDED = ("round", "next_round", "version", "result_version", "contributors", "superseded", "reason",
             "participants", "contributed", "waitingFor", "ready", "minParticipants", "reports", "valLoss",
             "valAccuracy", "valSamples")


def _observable(user: Any, task_id: str) -> tuple[Task | None, str, int]:
    """The task ``user`` may watch, or why not and the close code to say it with."""
    task = Task.objects.visible_to(user).filter(pk=task_id).first()
    if task is None:
        return None, f"No task with id '{task_id}'.", CLOSE_UNKNOWN_TASK
    if not can_edit(user, task):
        return None, f"Only the owner of task '{task_id}' or an administrator can watch its rounds.", CLOSE_REFUSED
    return task, "", 0


class RoundObserverConsumer(AsyncWebsocketConsumer):
    groups_joined: tuple[str, ...] = ()

    async def connect(self) -> None:
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        await self.accept()
        task, refusal, close_code = await database_sync_to_async(_observable)(self.scope.get("user"), task_id)
        if task is None:
            await self.send(text_data=json.dumps({"type": "error", "code": "refused", "reason": refusal}))
            await self.close(code=close_code)
            return
        self.groups_joined = (rounds.group_name(task.pk), peer_rounds.group_name(task.pk))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.send(text_data=json.dumps({"type": "watching", "task": task.pk}))

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Observers only listen."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        """WebSocket messages go to the usual handlers; every group event, whatever its type, is forwarded."""
        kind = message.get("type", "")
        if kind.startswith("websocket."):
            await super().dispatch(message)
            return
        event = {"type": "event", "event": kind.replace(".", "_"),
                 **{key: message[key] for key in FORWARDED if key in message}}
        await self.send(text_data=json.dumps(event))
