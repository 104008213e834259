"""Celery tasks of the collaboration engine (queue ``aggregation``: numpy only, never TensorFlow).

``aggregate_round`` is idempotent: the ``Round`` row is the source of truth, and the new
version and the round's closing commit together, so a worker killed and retried makes
exactly one next version.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from asgiref.sync import async_to_sync
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tasks.choices import Origin
from tasks.versions import create_version, delete_files

from .aggregators import aggregate
from .aggregators.bounds import capped_shares
from .models import Round
from .rounds import (
    _open_round,
    expected_specs,
    fail_round,
    group_name,
    prune_finished_rounds,
)
from .weights import artifacts_from_vector, load_frame, version_vector

log = logging.getLogger(__name__)


def _notify(task_id: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group_name(task_id), event)


_BLOCK = 1 << 17  # floats: 512 KiB, so the scratch block stays in cache


def _add_scaled(total: np.ndarray, vector: np.ndarray, share: float, scratch: np.ndarray) -> None:
    """``total += share * vector`` block by block: one read of ``vector`` and no temporary of its size."""
    factor = np.float32(share)
    for start in range(0, vector.size, scratch.size):
        end = min(start + scratch.size, vector.size)
        block = scratch[:end - start]
        np.multiply(vector[start:end], factor, out=block)
        total[start:end] += block


def _aggregate(rnd: Round) -> np.ndarray:
    task = rnd.task
    specs = expected_specs(rnd)
    contributions = list(rnd.contributions.order_by("participant_id"))
    # Sample counts weigh the updates, but none more than the task's max_contribution_share of the total.
    weights = capped_shares(np.array([c.samples for c in contributions], dtype=np.float64),
                            task.max_contribution_share)
    # The frames were checked for NaN/Inf when they arrived (consumers._submit): here only their
    # shapes are checked again, and the aggregate once at the end.
    if task.aggregator in ("mean", "plain_mean", "secure"):
        # Streaming mean: one memory-mapped update at a time, never the N x P matrix.
        n = len(contributions)
        w = weights if task.aggregator == "mean" else np.full(n, 1 / n)
        total = np.zeros(sum(s.size for s in specs), dtype=np.float32)
        scratch = np.empty(min(_BLOCK, total.size), dtype=np.float32)
        for share, c in zip(w, contributions, strict=True):
            _add_scaled(total, load_frame(c.blob, expected=specs, allow_non_finite=True).vector, share, scratch)
        return total
    matrix = np.stack([load_frame(c.blob, expected=specs, allow_non_finite=True).vector for c in contributions])
    params = dict(task.aggregator_params)
    if task.aggregator == "centered_clipping":
        params.setdefault("center", version_vector(rnd.base_version))
    return aggregate(task.aggregator, matrix, weights, **params)


# Read when a worker starts (Celery binds them to the task); prefork workers enforce them, the embedded
# in-process runner and the solo pool do not.
SOFT_TIME_LIMIT = settings.DISCO_AGGREGATION_SOFT_TIME_LIMIT
HARD_TIME_LIMIT = settings.DISCO_AGGREGATION_TIME_LIMIT


# A worker child killed mid-aggregation (OOM, hard limit) puts the task back on the queue: it is idempotent.
@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=SOFT_TIME_LIMIT,
             time_limit=HARD_TIME_LIMIT)
def aggregate_round(round_id: int) -> int | None:
    """Aggregate a closed round into the task's next version and open the next round.

    Past the soft time limit the round fails with a plain reason and nothing is written (the
    version's files are removed and its transaction rolled back); its participants go on from
    the current version in the next round.
    """
    try:
        return _aggregate_round(round_id)
    except SoftTimeLimitExceeded:
        log.warning("Aggregating round %s passed the soft time limit of %s s", round_id, SOFT_TIME_LIMIT)
        fail_round(round_id, f"Aggregation took longer than {SOFT_TIME_LIMIT} s (setting "
                             "DISCO_AGGREGATION_SOFT_TIME_LIMIT) and was stopped; nothing was written. The next "
                             "round starts again from the current version.")
        return None


def _aggregate_round(round_id: int) -> int | None:
    rnd = Round.objects.select_related("task", "base_version").filter(pk=round_id).first()
    if rnd is None or rnd.status != Round.Status.AGGREGATING:
        return rnd.result_version_id if rnd else None
    try:
        started = time.perf_counter()
        vector = _aggregate(rnd)
        log.info("Round %s: aggregated %d updates with %s in %.4f s", rnd.pk, rnd.contributions.count(),
                 rnd.task.aggregator, time.perf_counter() - started)
        if not np.isfinite(vector).all():
            raise ValueError("The aggregate holds NaN or infinite values; the round is not applied.")
        artifacts = artifacts_from_vector(rnd.base_version, vector)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        log.exception("Aggregating %s failed", rnd)
        fail_round(round_id, f"{type(exc).__name__}: {exc}")
        return None
    version = None
    try:
        with transaction.atomic():
            locked = Round.objects.select_for_update().select_related("task").get(pk=round_id)
            if locked.status != Round.Status.AGGREGATING:
                return locked.result_version_id
            note = f"Aggregated {locked.contributions.count()} updates with {locked.task.aggregator}."
            version = create_version(locked.task, artifacts, origin=Origin.ROUND, parent=rnd.base_version,
                                     round_number=locked.number, note=note)
            locked.status, locked.result_version, locked.closed_at = Round.Status.CLOSED, version, timezone.now()
            locked.save(update_fields=["status", "result_version", "closed_at"])
            locked.task.current_version = version
            next_round = _open_round(locked.task, locked.number + 1)
            event = {"type": "round.closed", "round": locked.number, "version": version.number,
                     "next_round": next_round.number, "contributors": locked.contributions.count()}
            task_id = locked.task_id
            transaction.on_commit(lambda: _notify(task_id, event))
            # Only once the version is committed: until then a re-run needs the round's frames.
            transaction.on_commit(lambda: _prune(task_id))
    except BaseException:
        # Rolled back (a soft timeout may land anywhere): the version's files would be left without a row.
        if version is not None:
            delete_files([version.storage_path(name) for name in version.file_names()])
        raise
    return version.pk


def _prune(task_id: str) -> None:
    try:
        contributions, participants = prune_finished_rounds(task_id)
    except Exception:  # the round is done; a failed clean-up is retried after the next round
        log.exception("Pruning the finished rounds of task %s failed", task_id)
        return
    if contributions or participants:
        log.info("Task %s: deleted %d stored updates of old rounds and %d departed participants", task_id,
                 contributions, participants)


@shared_task
def sweep() -> dict[str, int]:
    """One pass of ``aggregation.sweeper`` (for operators who schedule it with Celery beat instead)."""
    from dataclasses import asdict

    from .sweeper import sweep as sweep_once

    return asdict(sweep_once())


@worker_ready.connect
def _start_sweeper(sender: Any = None, **kwargs: Any) -> None:
    """Every worker of the aggregation queue runs the sweeper on a thread (several at once are safe)."""
    app = getattr(sender, "app", None)
    if app is not None and "aggregation" in (app.amqp.queues.consume_from or {}):
        from .sweeper import start_in_worker

        start_in_worker()
