"""Telling a task's channel group what happened, only once the change is committed.

The round services (``rounds``, ``peer_rounds``) are the only callers: a consumer never
broadcasts a state change itself, and nothing is announced that a rollback then undoes.
"""

from __future__ import annotations

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
