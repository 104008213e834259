"""Telling a task's channel group what happened, only once the change is committed.

The round services (``rounds``, ``peer_rounds``) are the only callers: a consumer never
broadcasts a state change itself, and nothing is announced that a rollback then undoes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def send_to_group(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, event)


def send_to_group_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to ``group`` once the surrounding transaction has committed (never on rollback)."""
    transaction.on_commit(lambda: send_to_group(group, event))


class Coalescing:
    """Tells a group the latest state of something at most once per ``window`` seconds from this process.

    For news of which only the latest matters, such as how many take part: a class of 500 joining at once
    would otherwise send 500 broadcasts to a group growing to 500, some 125,000 messages through the channel
    layer and the web processes, and as many again when they leave. ``changed(group, event)`` schedules one
    send ``window`` seconds later unless one is already scheduled; ``event()`` then reads the state (so the send
    says what is true when it goes, whoever asked), and a change after that schedules the next send. Runs on
    the web process's event loop.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._scheduled: dict[str, asyncio.Task] = {}

    def changed(self, group: str, event: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        loop = asyncio.get_running_loop()
        scheduled = self._scheduled.get(group)
        if scheduled is not None and not scheduled.done() and scheduled.get_loop() is loop:
            return
        self._scheduled[group] = loop.create_task(self._send_later(group, event))

    async def _send_later(self, group: str, event: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        await asyncio.sleep(self.window)
        self._scheduled.pop(group, None)  # a change from now on is not in what is read next: it sends again
        layer = get_channel_layer()
        if layer is not None:
            await layer.group_send(group, await event())

    def clear(self) -> None:
        for scheduled in self._scheduled.values():
            with contextlib.suppress(RuntimeError):  # its event loop is closed already (tests run one loop each)
                scheduled.cancel()
        self._scheduled.clear()


# How many take part in a task, told its group by the consumers after joins and departures (rounds.enter / leave
# with announce=False).
PARTICIPANT_NEWS = Coalescing(window=0.2)
