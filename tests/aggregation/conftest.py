"""Fixtures the round service's tests share."""

from __future__ import annotations

import pytest

from aggregation import rounds


@pytest.fixture
def held(monkeypatch) -> list[tuple[str, tuple]]:
    """Closing a round queues nothing: the test runs aggregate_round itself, when it chooses. Returns what would
    have been queued (task name, arguments)."""
    queued: list[tuple[str, tuple]] = []
    monkeypatch.setattr(rounds, "enqueue_named_on_commit", lambda name, *args: queued.append((name, args)))
    return queued
