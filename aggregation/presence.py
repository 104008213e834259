"""Which participants this web process serves, and the heartbeat that keeps their ``last_seen`` fresh.

Each WebSocket endpoint registers its participant once it has joined and unregisters it when the
socket closes. Every ``DISCO_HEARTBEAT_SECONDS`` one query refreshes ``last_seen`` for all of them,
however long they stay quiet (a participant trains for minutes without a message). When the process
dies its participants stop being refreshed, and the sweeper disconnects them after
``DISCO_PARTICIPANT_SILENT_AFTER`` seconds: this is how stale ``connected`` flags are cleared when
several web processes share the database, without one process's start disconnecting the
participants of the others. (Embedded, the one web process resets every flag at start.)
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from django.conf import settings
from django.utils import timezone

from disco_site.jobs import run_every

from .models import Participant

_lock = threading.Lock()
_served: Counter[Any] = Counter()  # a participant resumed on a second socket counts twice
_started = False


def register(participant_id: Any) -> None:
    with _lock:
        _served[participant_id] += 1


def unregister(participant_id: Any) -> None:
    with _lock:
        _served[participant_id] -= 1
        if _served[participant_id] <= 0:
            del _served[participant_id]


def served() -> list[Any]:
    with _lock:
        return list(_served)


def heartbeat() -> int:
    """Refresh ``last_seen`` of every participant this process serves; returns how many rows it touched."""
    ids = served()
    if not ids:
        return 0
    return Participant.objects.filter(pk__in=ids).update(last_seen=timezone.now())


def start_heartbeat() -> None:
    """Start this process's heartbeat thread once (not when ``DISCO_HEARTBEAT_SECONDS`` is 0)."""
    global _started
    with _lock:
        if _started or not settings.DISCO_HEARTBEAT_SECONDS:
            return
        _started = True
    run_every(settings.DISCO_HEARTBEAT_SECONDS, heartbeat, name="disco-heartbeat",
              first_after=settings.DISCO_HEARTBEAT_SECONDS)
