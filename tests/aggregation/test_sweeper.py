"""The sweeper enforces every deadline kept in the database: once, even with two sweepers, and cheaply."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import close_old_connections
from django.utils import timezone

from aggregation import presence, rounds, sweeper
from aggregation.models import Participant, PeerRound, PeerTurn, Round
from disco_client.codec import decode_weights
from tasks.models import ConversionJob
from tasks.versions import create_version
from tests.aggregation.test_consumer import update_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_modes]


@pytest.fixture
def fed_task(make_task, tiny_artifacts):
    task = make_task("fed", min_participants=2)
    create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    return task


def contribute(task, participant) -> None:
    rnd = rounds.active_round(task)
    frame = update_frame(task, fill=0.1, round_number=rnd.number, base=task.current_version.number)
    rounds.submit(participant, decode_weights(frame, expected=rounds.expected_specs(rnd)), ContentFile(frame))


def two_of_three_contributed(task) -> Round:
    """Three participants joined, two sent updates: the round waits for the third until its deadline."""
    members = [rounds.join(task)[0] for _ in range(3)]
    for p in members[:2]:
        contribute(task, p)
    rnd = Round.objects.get(task=task, number=1)
    assert rnd.status == Round.Status.OPEN
    return rnd


def test_a_federated_round_past_its_deadline_is_closed_and_aggregated(fed_task):
    rnd = two_of_three_contributed(fed_task)
    assert not sweeper.sweep(rnd.deadline - timedelta(seconds=1))  # not due yet
    report = sweeper.sweep(rnd.deadline + timedelta(seconds=1))
    assert report.closed_rounds == 1
    rnd.refresh_from_db()
    assert rnd.status == Round.Status.CLOSED and rnd.result_version.number == 2  # aggregated (eager Celery)
    assert not sweeper.sweep(rnd.deadline + timedelta(seconds=2))  # done is done


def test_a_round_short_of_its_minimum_stays_open_past_its_deadline(fed_task):
    members = [rounds.join(fed_task)[0] for _ in range(3)]
    contribute(fed_task, members[0])
    rnd = Round.objects.get(task=fed_task, number=1)
    Participant.objects.update(last_seen=rnd.deadline)  # all alive
    assert not sweeper.sweep(rnd.deadline + timedelta(seconds=1))
    rnd.refresh_from_db()
    assert rnd.status == Round.Status.OPEN


def test_a_sweep_with_nothing_due_changes_nothing_in_a_few_queries(fed_task, django_assert_max_num_queries):
    two_of_three_contributed(fed_task)
    job = ConversionJob.objects.create(task=fed_task, source="provider:fed", status=ConversionJob.Status.RUNNING,
                                       started_at=timezone.now())
    with django_assert_max_num_queries(5):
        assert not sweeper.sweep()
    job.refresh_from_db()
    assert job.status == ConversionJob.Status.RUNNING
    assert Participant.objects.filter(connected=True).count() == 3


def exchanging_round(task, peers: list[Participant], *, deadline) -> PeerRound:
    rnd = PeerRound.objects.create(task=task, number=1, status=PeerRound.Status.EXCHANGING, started_at=timezone.now(),
                                   exchange_deadline=deadline)
    PeerRound.objects.create(task=task, number=2)
    for p in peers:
        PeerTurn.objects.create(round=rnd, participant=p, selected=True)
    return rnd


def test_a_decentralized_exchange_deadline_survives_a_restart(make_task):
    """The round was started by a process that is gone: no consumer, no timer; the sweep closes it."""
    task = make_task("dec", scheme="decentralized", min_participants=2)
    peers = [rounds.join(task)[0] for _ in range(2)]
    now = timezone.now()
    rnd = exchanging_round(task, peers, deadline=now + timedelta(seconds=30))
    PeerTurn.objects.filter(round=rnd, participant=peers[0]).update(done_at=now, received=[str(peers[0].pk)])
    assert not sweeper.sweep(now)
    report = sweeper.sweep(now + timedelta(seconds=31))
    assert report.peer_rounds == 1
    rnd.refresh_from_db()
    assert rnd.status == PeerRound.Status.CLOSED and rnd.agreed == [str(peers[0].pk)]
    assert "exchange deadline; 1 peer(s) had not reported done" in rnd.message
    assert not sweeper.sweep(now + timedelta(seconds=32))


def test_a_decentralized_ready_deadline_starts_the_round_with_the_ready_peers(make_task):
    task = make_task("dec", scheme="decentralized", min_participants=2)
    peers = [rounds.join(task)[0] for _ in range(3)]
    now = timezone.now()
    rnd = PeerRound.objects.create(task=task, number=1, ready_deadline=now + timedelta(seconds=10))
    for p in peers[:2]:
        PeerTurn.objects.create(round=rnd, participant=p)
    assert not sweeper.sweep(now)
    assert sweeper.sweep(now + timedelta(seconds=11)).peer_rounds == 1
    rnd.refresh_from_db()
    assert rnd.status == PeerRound.Status.EXCHANGING and rnd.exchange_deadline is not None
    assert set(rnd.turns.filter(selected=True).values_list("participant_id", flat=True)) == {p.pk for p in peers[:2]}


def test_a_job_stuck_running_is_requeued_once_then_failed(fed_task, settings, monkeypatch):
    queued = []
    monkeypatch.setattr(sweeper, "_requeue_conversion", lambda job: queued.append(job.pk))
    started = timezone.now()
    job = ConversionJob.objects.create(task=fed_task, source="provider:fed", status=ConversionJob.Status.RUNNING,
                                       started_at=started)
    stuck = timedelta(seconds=settings.DISCO_CONVERSION_STUCK_AFTER + 1)
    assert not sweeper.sweep(started + stuck - timedelta(seconds=2))
    assert sweeper.sweep(started + stuck).requeued_jobs == 1 and queued == [job.pk]
    job.refresh_from_db()
    assert job.status == ConversionJob.Status.QUEUED and job.attempts == 1 and "queued again" in job.message
    # A worker takes it again (tasks.tasks._run_job) and is lost again.
    ConversionJob.objects.filter(pk=job.pk).update(status=ConversionJob.Status.RUNNING, started_at=started + stuck)
    assert sweeper.sweep(started + 2 * stuck).failed_jobs == 1 and queued == [job.pk]
    job.refresh_from_db()
    assert job.status == ConversionJob.Status.FAILED and job.finished_at is not None
    assert job.message.startswith("The conversion stopped without finishing twice")
    assert not sweeper.sweep(started + 3 * stuck)


def test_silent_participants_are_disconnected_and_leave_the_quorum(fed_task, settings):
    rnd = two_of_three_contributed(fed_task)
    silent = Participant.objects.exclude(contributions__round=rnd).get()
    live = list(Participant.objects.exclude(pk=silent.pk))
    now = timezone.now()
    Participant.objects.update(last_seen=now - timedelta(seconds=settings.DISCO_PARTICIPANT_SILENT_AFTER + 5))
    for p in live:  # their web process is alive: its heartbeat refreshes them
        presence.register(p.pk)
    try:
        assert presence.heartbeat() == 2
    finally:
        for p in live:
            presence.unregister(p.pk)
    report = sweeper.sweep(now)
    assert report.disconnected == 1
    assert set(Participant.objects.filter(connected=True)) == set(live)
    rnd.refresh_from_db()  # everyone still connected has contributed: leaving closed the round
    assert rnd.status == Round.Status.CLOSED
    # The silent one had sent nothing: once the round's version was committed, its row was pruned.
    assert not Participant.objects.filter(pk=silent.pk).exists()
    assert not sweeper.sweep(now)


def test_a_silent_peer_leaves_its_exchanging_round(make_task, settings):
    task = make_task("dec", scheme="decentralized", min_participants=2)
    peers = [rounds.join(task)[0] for _ in range(2)]
    now = timezone.now()
    rnd = exchanging_round(task, peers, deadline=now + timedelta(seconds=600))
    PeerTurn.objects.filter(round=rnd, participant=peers[0]).update(done_at=now)
    Participant.objects.filter(pk=peers[1].pk).update(
        last_seen=now - timedelta(seconds=settings.DISCO_PARTICIPANT_SILENT_AFTER + 5))
    assert sweeper.sweep(now).disconnected == 1
    rnd.refresh_from_db()
    assert rnd.status == PeerRound.Status.CLOSED  # the peer left, the other was done: no wait for the deadline
    assert PeerTurn.objects.get(round=rnd, participant=peers[1]).left_at is not None


def test_two_concurrent_sweeps_act_once(fed_task, settings, monkeypatch):
    from django.db import connection

    if connection.vendor == "sqlite":
        # The in-memory SQLite test database fails a second writer ("table is locked") where a file
        # database waits; embedded mode runs one sweeper anyway. The PostgreSQL pass runs this test.
        pytest.skip("needs a database that serializes concurrent writers (the PostgreSQL pass)")
    rnd = two_of_three_contributed(fed_task)
    aggregations, conversions, departures = [], [], []
    from aggregation import rounds

    def record(name: str, round_id: int) -> None:
        if name == rounds.AGGREGATE_ROUND:
            aggregations.append(round_id)

    monkeypatch.setattr(rounds, "enqueue_named_on_commit", record)
    monkeypatch.setattr(sweeper, "_requeue_conversion", lambda job: conversions.append(job.pk))
    leave = sweeper._leave
    monkeypatch.setattr(sweeper, "_leave", lambda p: (departures.append(p.pk), leave(p)))
    later = rnd.deadline + timedelta(seconds=settings.DISCO_CONVERSION_STUCK_AFTER + 1)
    job = ConversionJob.objects.create(task=fed_task, source="provider:fed", status=ConversionJob.Status.RUNNING,
                                       started_at=rnd.deadline)
    silent = Participant.objects.exclude(contributions__round=rnd).get()
    Participant.objects.update(last_seen=later)
    Participant.objects.filter(pk=silent.pk).update(last_seen=rnd.deadline)

    barrier, reports, errors = threading.Barrier(2), [], []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            reports.append(sweeper.sweep(later))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert aggregations == [rnd.pk] and conversions == [job.pk] and departures == [silent.pk]
    assert sum(r.closed_rounds for r in reports) == 1 and sum(r.requeued_jobs for r in reports) == 1
    assert sum(r.disconnected for r in reports) == 1
    rnd.refresh_from_db()
    job.refresh_from_db()
    assert rnd.status == Round.Status.AGGREGATING and job.attempts == 1


def test_recovery_at_start_requeues_orphaned_work_and_resets_connections(fed_task, monkeypatch):
    """Embedded mode: the one web process restarted, so everything in flight died with it."""
    queued_jobs, queued_rounds = [], []
    monkeypatch.setattr(sweeper, "_requeue_conversion", lambda job: queued_jobs.append(job.pk))
    monkeypatch.setattr(sweeper, "_requeue_aggregation", queued_rounds.append)
    rounds.join(fed_task)
    waiting = ConversionJob.objects.create(task=fed_task, source="provider:fed")
    running = ConversionJob.objects.create(task=fed_task, source="provider:fed", status=ConversionJob.Status.RUNNING,
                                           started_at=timezone.now())
    rnd = Round.objects.create(task=fed_task, number=1, base_version=fed_task.current_version,
                               status=Round.Status.AGGREGATING, deadline=timezone.now(),
                               aggregating_since=timezone.now())
    report = sweeper.recover_at_start()
    assert sorted(queued_jobs) == sorted([waiting.pk, running.pk]) and queued_rounds == [rnd.pk]
    assert report.requeued_jobs == 2 and report.requeued_rounds == 1
    assert not Participant.objects.filter(connected=True).exists()
    running.refresh_from_db()
    assert running.status == ConversionJob.Status.QUEUED and running.attempts == 1
