"""The sweeper: one periodic pass that enforces every deadline and timeout kept in the database.

No deadline lives in a process (no asyncio timer, no countdown task): each is a column, and
``sweep()`` acts on those that have passed.

1. Federated rounds past their ``deadline``: closed if enough participants contributed.
2. Decentralized rounds past their ``ready_deadline`` (started with the ready peers) or their
   ``exchange_deadline`` (agreed on the reports there are, then closed).
3. Rounds still ``aggregating`` ``DISCO_AGGREGATION_STUCK_AFTER`` seconds after they started: re-queued
   once, then failed with a plain reason.
4. Conversion jobs still ``running`` ``DISCO_CONVERSION_STUCK_AFTER`` seconds after they started:
   re-queued once, then failed with a plain reason.
5. Participants whose ``last_seen`` is older than ``DISCO_PARTICIPANT_SILENT_AFTER``: disconnected
   (they leave their rounds). Every web process refreshes the ``last_seen`` of the participants it
   serves (``aggregation.presence``), so only those whose process died fall silent.

Who runs it: every aggregation worker, on a thread started when the worker is ready
(``aggregation.tasks``), and in embedded mode the web process (``start_in_web_process``), which
first picks up what a restart left unfinished (``recover_at_start``). Several sweepers at once are
safe: every step acts through a row lock (the round services' ``select_for_update``) or a
conditional update that only one of them wins. A pass with nothing due costs five indexed queries.

The transitions belong to the round services (``rounds``, ``peer_rounds``); the calls into them are
gathered in the "Transitions" section below, so re-pointing them is one edit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from disco_site.jobs import embedded, run_every, run_now
from tasks.models import ConversionJob

from .models import Participant, PeerRound, Round

log = logging.getLogger(__name__)

# A stuck aggregation or conversion is re-queued this many times before it is failed.
MAX_REQUEUES = 1


@dataclass
class SweepReport:
    """What one pass did (all zero when nothing was due)."""

    closed_rounds: int = 0
    peer_rounds: int = 0
    requeued_rounds: int = 0
    failed_rounds: int = 0
    requeued_jobs: int = 0
    failed_jobs: int = 0
    disconnected: int = 0

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


# --- Transitions: the round services own them; the sweeper only says when -------------------------

def _close_federated(round_id: int, now: datetime) -> bool:
    from . import rounds

    return rounds.close_if_due(round_id, now=now)


def _fail_federated(round_id: int, reason: str) -> bool:
    from . import rounds

    return rounds.fail(round_id, reason)


def _requeue_aggregation(round_id: int) -> None:
    from .tasks import aggregate_round

    run_now(aggregate_round, round_id)


def _advance_peer_round(rnd: PeerRound, now: datetime) -> bool:
    from . import peer_rounds

    if rnd.status == PeerRound.Status.OPEN:
        return peer_rounds.maybe_start(rnd.pk, now=now)
    agreed = peer_rounds.maybe_agree(rnd.pk, now=now)
    return peer_rounds.maybe_close(rnd.pk, now=now) or agreed


def _leave(participant: Participant) -> None:
    from . import peer_rounds, rounds

    if participant.task.scheme == "decentralized":
        peer_rounds.leave(participant)
    else:
        rounds.leave(participant)


def _requeue_conversion(job: ConversionJob) -> None:
    from tasks.tasks import convert_provider_model, convert_uploaded_model

    run_now(convert_uploaded_model if job.source_file else convert_provider_model, job.pk)


# --- The pass ----------------------------------------------------------------------------------------

def sweep(now: datetime | None = None) -> SweepReport:
    """Act on every deadline and timeout that has passed at ``now``; idempotent, safe to run concurrently."""
    now = now or timezone.now()
    report = SweepReport()
    for pk in Round.objects.filter(status=Round.Status.OPEN, deadline__lte=now).values_list("pk", flat=True):
        report.closed_rounds += _close_federated(pk, now)
    due = (Q(status=PeerRound.Status.OPEN, ready_deadline__lte=now)
           | Q(status=PeerRound.Status.EXCHANGING, exchange_deadline__lte=now))
    for rnd in PeerRound.objects.filter(due).only("pk", "status"):
        report.peer_rounds += _advance_peer_round(rnd, now)
    report.requeued_rounds, report.failed_rounds = _stuck_aggregations(now)
    report.requeued_jobs, report.failed_jobs = _stuck_conversions(now)
    report.disconnected = _silent_participants(now)
    if report:
        log.info("Sweep: %s", report)
    return report


def _stuck_aggregations(now: datetime, *, everything: bool = False) -> tuple[int, int]:
    stuck = Round.objects.filter(status=Round.Status.AGGREGATING)
    if not everything:
        cutoff = now - timedelta(seconds=settings.DISCO_AGGREGATION_STUCK_AFTER)
        stuck = stuck.filter(Q(aggregating_since__lte=cutoff) | Q(aggregating_since__isnull=True))
    requeued = failed = 0
    for pk, attempts in stuck.values_list("pk", "aggregation_attempts"):
        if attempts < MAX_REQUEUES:
            # Whoever moves the attempt counter on re-queues; a concurrent sweeper updates nothing.
            if Round.objects.filter(pk=pk, status=Round.Status.AGGREGATING, aggregation_attempts=attempts).update(
                    aggregation_attempts=attempts + 1, aggregating_since=now):
                log.warning("Round %s is still aggregating after %s s: queued again", pk,
                            settings.DISCO_AGGREGATION_STUCK_AFTER)
                _requeue_aggregation(pk)
                requeued += 1
        elif _fail_federated(pk, f"Aggregation did not finish within {settings.DISCO_AGGREGATION_STUCK_AFTER} s "
                                 f"(setting DISCO_AGGREGATION_STUCK_AFTER), twice: its worker stopped or is stuck, "
                                 "and nothing was written. The next round starts again from the current version."):
            failed += 1
    return requeued, failed


def _stuck_conversions(now: datetime, *, everything: bool = False) -> tuple[int, int]:
    stuck = ConversionJob.objects.filter(status=ConversionJob.Status.RUNNING)
    if not everything:
        cutoff = now - timedelta(seconds=settings.DISCO_CONVERSION_STUCK_AFTER)
        stuck = stuck.filter(Q(started_at__lte=cutoff) | Q(started_at__isnull=True))
    requeued = failed = 0
    for job in stuck.only("pk", "attempts", "source_file"):
        claim = ConversionJob.objects.filter(pk=job.pk, status=ConversionJob.Status.RUNNING, attempts=job.attempts)
        if job.attempts < MAX_REQUEUES:
            if claim.update(status=ConversionJob.Status.QUEUED, attempts=job.attempts + 1,
                            message="The conversion stopped without finishing (its worker or the platform "
                                    "restarted); it was queued again."):
                log.warning("Conversion job %s was running but stopped: queued again", job.pk)
                _requeue_conversion(job)
                requeued += 1
        elif claim.update(status=ConversionJob.Status.FAILED, finished_at=now,
                          message="The conversion stopped without finishing twice (its worker or the platform "
                                  "restarted while it ran, or it ran out of time). Try again; if it fails again, "
                                  "upload a smaller model or ask the administrator to look at the worker's log."):
            failed += 1
    return requeued, failed


def _silent_participants(now: datetime) -> int:
    silent_after = settings.DISCO_PARTICIPANT_SILENT_AFTER
    if not silent_after:
        return 0
    cutoff = now - timedelta(seconds=silent_after)
    gone = 0
    for participant in Participant.objects.filter(connected=True, last_seen__lt=cutoff).select_related("task"):
        # Only the sweeper whose update flips the flag makes the participant leave.
        if Participant.objects.filter(pk=participant.pk, connected=True, last_seen__lt=cutoff).update(
                connected=False):
            _leave(participant)
            gone += 1
    return gone


# --- Restarts and where it runs ----------------------------------------------------------------------

def recover_at_start(now: datetime | None = None) -> SweepReport:
    """Embedded mode, at start: pick up what the previous process left unfinished, then sweep.

    The web process is the only process: every ``connected`` flag is stale, every queued job was in
    its memory, and every running job or aggregating round died with it. Queued jobs are queued
    again; running jobs and aggregating rounds count a re-queue (so one that kills the process
    every time ends failed, not in a loop).
    """
    now = now or timezone.now()
    report = SweepReport()
    Participant.objects.filter(connected=True).update(connected=False)
    for job in ConversionJob.objects.filter(status=ConversionJob.Status.QUEUED).only("pk", "source_file"):
        _requeue_conversion(job)
        report.requeued_jobs += 1
    requeued, report.failed_jobs = _stuck_conversions(now, everything=True)
    report.requeued_jobs += requeued
    report.requeued_rounds, report.failed_rounds = _stuck_aggregations(now, everything=True)
    log.info("Recovered at start (embedded mode): %s", report)
    swept = sweep(now)
    for f in fields(report):
        setattr(report, f.name, getattr(report, f.name) + getattr(swept, f.name))
    return report


def _recover_then_sweep() -> None:
    recover_at_start()
    run_every(settings.DISCO_SWEEP_SECONDS, sweep, name="disco-sweeper", first_after=settings.DISCO_SWEEP_SECONDS)


def start_in_web_process() -> None:
    """Called by ``disco_site.asgi``: the participants' heartbeat (both modes) and, embedded, the sweeper."""
    from . import presence

    presence.start_heartbeat()
    if embedded() and settings.DISCO_SWEEP_SECONDS > 0:
        run_every(0, _recover_then_sweep, name="disco-recovery")


def start_in_worker() -> None:
    """Called when an aggregation worker is ready: every aggregation worker sweeps (concurrency-safe)."""
    if settings.DISCO_SWEEP_SECONDS > 0:
        run_every(settings.DISCO_SWEEP_SECONDS, sweep, name="disco-sweeper")
