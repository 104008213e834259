"""Celery tasks of the collaboration engine (queue ``aggregation``: numpy only, never TensorFlow).

They compute; ``aggregation.rounds`` decides. ``aggregate_round`` reads a round's stored
updates, computes the aggregate and hands it to ``rounds.finish`` (or the reason it could
not to ``rounds.fail``); every status change, version write and broadcast is the service's.
It is idempotent: the ``Round`` row is the source of truth, and ``rounds.finish`` writes the
version and closes the round in one transaction, only while the round is aggregating, so a
worker killed and retried, or a duplicate delivery, makes exactly one version.

This module imports ``rounds``; ``rounds`` never imports it (it queues these tasks by name).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.conf import settings

from . import optimizer_state, rounds
from .aggregators import registry, too_few_updates
from .aggregators.bounds import capped_shares
from .aggregators.source import UpdateSource
from .aggregators.source import rows as update_rows
from .models import Round
from .weights import artifacts_from_vector, stored_frames, version_vector

log = logging.getLogger(__name__)


def _aggregate(rnd: Round) -> np.ndarray:
    """The round's aggregate, by the task's aggregator as the registry describes it."""
    task = rnd.task
    contributions = list(rnd.contributions.order_by("participant_id"))
    # Sample counts weigh the updates, but none more than the task's max_contribution_share of the total.
    weights = capped_shares(np.array([c.samples for c in contributions], dtype=np.float64),
                            task.max_contribution_share)
    # The frames were checked for NaN/Inf when they arrived (consumers._submit): here only their
    # headers and sizes are checked again, and the aggregate once at the end.
    source = stored_frames([c.blob for c in contributions], expected=rounds.expected_specs(rnd))
    return aggregate_updates(task.aggregator, source, weights, dict(task.aggregator_params),
                             base=lambda: version_vector(rnd.base_version))


def aggregate_updates(name: str, source: UpdateSource, weights: np.ndarray, params: dict[str, Any],
                      base: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """Aggregate ``source``'s updates with rule ``name`` (capped ``weights``, the task's ``params``).

    Never holds the N x P matrix: the means stream one update at a time; every other rule reads
    blocks of coordinates of at most the source's ``block_bytes``. ``base`` gives the round's base
    model for a rule that takes it (centered clipping's center).
    """
    spec = registry.aggregator(name)
    if spec.stream is not None:
        n = source.count
        shares = weights if spec.weighted else np.full(n, 1 / n)
        return spec.stream(update_rows(source), shares, source.size)
    params = dict(params)
    if spec.base_param and base is not None:
        params.setdefault(spec.base_param, base())
    return spec.rule(source, weights, **params)


# Read when a worker starts (Celery binds them to the task); prefork workers enforce them, the embedded
# in-process runner and the solo pool do not.
SOFT_TIME_LIMIT = settings.DISCO_AGGREGATION_SOFT_TIME_LIMIT
HARD_TIME_LIMIT = settings.DISCO_AGGREGATION_TIME_LIMIT


# A worker child killed mid-aggregation (OOM, hard limit) puts the task back on the queue: it is idempotent.
@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=SOFT_TIME_LIMIT,
             time_limit=HARD_TIME_LIMIT)
def aggregate_round(round_id: int) -> int | None:
    """Aggregate a closed round and hand the result to ``rounds.finish``; returns the result version's pk.

    Past the soft time limit the round fails with a plain reason and nothing is written (the
    version's files are removed and its transaction rolled back); its participants go on from
    the current version in the next round.
    """
    try:
        return _aggregate_round(round_id)
    except SoftTimeLimitExceeded:
        log.warning("Aggregating round %s passed the soft time limit of %s s", round_id, SOFT_TIME_LIMIT)
        rounds.fail(round_id, f"Aggregation took longer than {SOFT_TIME_LIMIT} s (setting "
                              "DISCO_AGGREGATION_SOFT_TIME_LIMIT) and was stopped; nothing was written. The next "
                              "round starts again from the current version.")
        return None


def _aggregate_round(round_id: int) -> int | None:
    rnd = Round.objects.select_related("task", "base_version").filter(pk=round_id).first()
    if rnd is None or rnd.status != Round.Status.AGGREGATING:  # done, failed or gone: nothing to do
        return rnd.result_version_id if rnd else None
    task = rnd.task
    count = rnd.contributions.count()
    problem = too_few_updates(task.aggregator, task.aggregator_params, count)
    if problem:
        rounds.fail(round_id, f"{problem} The next round starts again from the current version.")
        return None
    step = None
    try:
        started = time.perf_counter()
        vector = _aggregate(rnd)
        log.info("Round %s: aggregated %d updates with %s in %.4f s", rnd.pk, count, task.aggregator,
                 time.perf_counter() - started)
        if not np.isfinite(vector).all():
            raise ValueError("The aggregate holds NaN or infinite values; the round is not applied.")
        # The server optimizer (if any) steps from the base along the aggregate's change; its new state is
        # stored now and recorded by finish only if the round's version becomes current.
        vector, step = optimizer_state.server_step(task, rnd.base_version, version_vector(rnd.base_version),
                                                   vector, rnd.number)
        if not np.isfinite(vector).all():
            raise ValueError("The server optimizer's step holds NaN or infinite values; the round is not applied.")
        artifacts = artifacts_from_vector(rnd.base_version, vector)
    except BaseException as exc:
        if step is not None:
            optimizer_state.discard(step.blob)
        if not isinstance(exc, Exception) or isinstance(exc, SoftTimeLimitExceeded):
            raise
        log.exception("Aggregating %s failed", rnd)
        rounds.fail(round_id, f"Aggregation failed ({type(exc).__name__}: {exc}); nothing was written. The next "
                              "round starts again from the current version.")
        return None
    return rounds.finish(round_id, artifacts, step).result_version_id


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
