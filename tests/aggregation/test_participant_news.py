"""Coalesced participant news (aggregation/broadcast.py): one message for a burst of joins or departures."""

from __future__ import annotations

import asyncio
import json

import pytest

from aggregation import broadcast
from aggregation.broadcast import Coalescing
from tests.aggregation.websockets import connect, receive


class Layer:
    """A channel layer that records what is sent to groups, and lets a test wait for each send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self._arrived: asyncio.Queue = asyncio.Queue()

    async def group_send(self, group: str, event: dict) -> None:
        self.sent.append((group, event))
        self._arrived.put_nowait(None)

    async def sends(self, count: int, timeout: float = 5.0) -> None:
        """Return once ``count`` sends have been made in all, or fail after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.sent) < count:
                    await self._arrived.get()
        except TimeoutError:
            raise AssertionError(f"{len(self.sent)} of {count} sends within {timeout} s") from None


@pytest.fixture
def layer(monkeypatch):
    recorder = Layer()
    monkeypatch.setattr(broadcast, "get_channel_layer", lambda: recorder)
    return recorder


async def test_a_burst_of_changes_sends_once_with_the_state_read_when_it_goes(layer):
    news, state = Coalescing(window=0.05), {"participants": 0}

    async def event() -> dict:
        return {"type": "participants.changed", **state}

    for count in range(1, 101):  # a hundred joins in one burst
        state["participants"] = count
        news.changed("task_a", event)
    news.changed("task_b", event)
    await layer.sends(2)
    assert sorted(layer.sent, key=lambda s: s[0]) == [
        ("task_a", {"type": "participants.changed", "participants": 100}),
        ("task_b", {"type": "participants.changed", "participants": 100})]


async def test_a_change_after_the_state_was_read_sends_again(layer):
    news, reads, state = Coalescing(window=0.02), [], {"participants": 1}

    async def event() -> dict:
        reads.append(state["participants"])
        if len(reads) == 1:
            state["participants"] = 2  # someone joins while the first send is being made
            news.changed("task", event)
        return {"participants": reads[-1]}

    news.changed("task", event)
    await layer.sends(2)
    assert [e["participants"] for _, e in layer.sent] == [1, 2]  # the last state is always told


@pytest.mark.django_db(transaction=True)
async def test_every_participant_hears_the_final_count_after_a_burst_of_joins_and_departures(make_task,
                                                                                          tiny_artifacts):
    from asgiref.sync import sync_to_async

    from tasks.versions import create_version

    task = await sync_to_async(make_task)("fed", min_participants=2)
    await sync_to_async(create_version)(task, tiny_artifacts, origin="initial")
    first = await connect("/ws/federated/fed/")
    await receive(first, "welcome")
    others = [await connect("/ws/federated/fed/") for _ in range(5)]
    for ws in others:
        await receive(ws, "welcome")

    async def count_reaches(n: int) -> int:
        messages = 0
        while True:
            message = await receive(first, "participants")
            messages += 1
            if message["participants"] == n:
                return messages

    joined_news = await count_reaches(6)
    assert joined_news <= 5
    for ws in others[:3]:
        await ws.disconnect()
    await count_reaches(3)
    await first.send_to(text_data=json.dumps({"type": "status"}))
    assert (await receive(first, "status"))["participants"] == 3
    for ws in (first, *others[3:]):
        await ws.disconnect()
