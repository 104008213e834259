"""Letting a participant in, shared by both WebSocket endpoints (federated and decentralized).

1. At the handshake: the task must exist, and the task's participation rule
   (``tasks.participation``) must admit the connection's session or ``X-Disco-Token`` header;
   otherwise an ``error`` frame says what to do and the socket closes with ``CLOSE_REFUSED``.
2. The client's first message is ``{"type": "join", "resumeToken": "...", "client": "browser"|"python"}``
   (``resumeToken`` only to reconnect as an earlier participant). The token travels in a
   message, never in the URL, so it never lands in an access log; ``?resume=`` is ignored.
3. Joining checks the caps (``check_capacity``, under the task's row lock): at most
   ``DISCO_MAX_PARTICIPANTS_PER_TASK`` connected participants per task and
   ``DISCO_MAX_CONNECTIONS_PER_ADDRESS`` from one client address; over a cap, an ``error``
   frame names it and the socket closes with ``CLOSE_FULL``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db.models import QuerySet

from tasks.models import Task
from tasks.participation import scope_refusal

from . import presence
from .models import Participant

CLOSE_UNKNOWN_TASK = 4404
CLOSE_REFUSED = 4403
CLOSE_FULL = 4429
CLOSE_JOIN_TIMEOUT = 4408


class AdmissionError(ValueError):
    """A connection the task does not take; ``code`` is machine-readable, the message says why and what to do."""

    def __init__(self, code: str, message: str, close_code: int = CLOSE_FULL):
        self.code = code
        self.close_code = close_code
        super().__init__(message)


def client_address(scope: Mapping[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def parse_join(text: str | None) -> tuple[str, str]:
    """The resume token and client kind of a ``join`` text frame; ``AdmissionError`` if it is not one."""
    try:
        message = json.loads(text) if text else None
    except json.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "join":
        raise AdmissionError("join_first", 'Send {"type": "join"} first (with "resumeToken" to reconnect as an '
                                           'earlier participant); nothing else is read before it.', 0)
    token = message.get("resumeToken") or ""
    kind = message.get("client") or Participant.Kind.BROWSER
    if not isinstance(token, str) or len(token) > 64:
        raise AdmissionError("bad_join", "resumeToken is the string a welcome gave you.", 0)
    return token, kind if kind in Participant.Kind.values else Participant.Kind.BROWSER


def check_capacity(connected: QuerySet[Participant], address: str | None) -> None:
    """Refuse one more connection when ``connected`` (the task's other live participants) is at a cap."""
    most = int(getattr(settings, "DISCO_MAX_PARTICIPANTS_PER_TASK", 0) or 0)
    if most and connected.count() >= most:
        raise AdmissionError("task_full", f"This task already has {most} connected participants, its limit "
                                          "(DISCO_MAX_PARTICIPANTS_PER_TASK); try again later.")
    per_address = int(getattr(settings, "DISCO_MAX_CONNECTIONS_PER_ADDRESS", 0) or 0)
    if per_address and address and connected.filter(address=address).count() >= per_address:
        raise AdmissionError("too_many_connections", f"Your address already has {per_address} connections to this "
                                                     "task, its limit (DISCO_MAX_CONNECTIONS_PER_ADDRESS); close one "
                                                     "first.")


class AdmittingConsumer(AsyncWebsocketConsumer):
    """Steps 1 and 2 for both endpoints; a subclass names its ``scheme`` and says how a participant joins.

    Subclasses provide ``find_task(task_id)`` (a published task of their scheme, or ``None``)
    and ``join(task, resume_token, kind, address) -> (participant, welcome message)``, both
    synchronous (they run in the database thread).
    """

    scheme: ClassVar[str]
    task: Task | None = None
    participant: Participant | None = None

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        """Send, unless the socket is already closing: then the message is dropped instead of raising.

        Under daphne a send that races the client's close raises autobahn's ``Disconnected``; raised
        from a broadcast handler it would end this consumer before its ``websocket.disconnect`` runs,
        leaving the participant counted as connected until the sweeper notices (many participants
        leaving at once made that happen). The disconnect that follows does the bookkeeping.
        """
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Exception as exc:
            if type(exc).__name__ != "Disconnected":
                raise

    def find_task(self, task_id: str) -> Task | None:  # pragma: no cover - subclasses provide it
        raise NotImplementedError

    def join(self, task: Task, resume_token: str, kind: str,
             address: str | None) -> tuple[Participant, dict[str, Any]]:  # pragma: no cover - subclasses provide it
        raise NotImplementedError

    async def send_error(self, code: str, reason: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "code": code, "reason": reason}))

    async def admit_connection(self) -> bool:
        """Accept the socket, then keep it only for an existing task whose participation rule admits it."""
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        await self.accept()
        task = await database_sync_to_async(self.find_task)(task_id)
        if task is None:
            await self.send_error("unknown_task", f"No published {self.scheme} task with id '{task_id}'. "
                                                  "GET /api/tasks/ lists the available tasks.")
            await self.close(code=CLOSE_UNKNOWN_TASK)
            return False
        refusal = await database_sync_to_async(scope_refusal)(self.scope, task)
        if refusal is not None:
            await self.send_error(refusal.code, refusal.message)
            await self.close(code=CLOSE_REFUSED)
            return False
        self.task = task
        # A socket that never joins would hold a connection without counting towards any cap. This timer
        # lives as long as the connection it guards, so unlike a round's deadline it needs no column.
        self._join_timer = asyncio.get_running_loop().create_task(self._close_unless_joined())
        return True

    async def _close_unless_joined(self) -> None:
        seconds = settings.DISCO_JOIN_TIMEOUT_SECONDS
        await asyncio.sleep(seconds)
        if self.participant is None:
            await self.send_error("join_timeout", f'No {{"type": "join"}} message within {seconds} s of connecting: '
                                                  "the connection is closed. Connect again and join at once.")
            await self.close(code=CLOSE_JOIN_TIMEOUT)

    def stop_join_timer(self) -> None:
        """Called when the connection ends: a timer must not outlive it."""
        timer = getattr(self, "_join_timer", None)
        if timer is not None:
            timer.cancel()

    async def admit_participant(self, text_data: str | None) -> dict[str, Any] | None:
        """The first message: ``{"type": "join", "resumeToken"?, "client"?}``; the ``welcome`` to send, if admitted."""
        try:
            resume, kind = parse_join(text_data)
            self.participant, welcome = await database_sync_to_async(self.join)(
                self.task, resume, kind, client_address(self.scope))
        except AdmissionError as exc:
            await self.send_error(exc.code, str(exc))
            if exc.close_code:
                await self.close(code=exc.close_code)
            return None
        presence.register(self.participant.pk)
        return welcome

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.participant is not None:
            presence.unregister(self.participant.pk)
        await super().websocket_disconnect(message)
