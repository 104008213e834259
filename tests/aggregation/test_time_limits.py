"""Aggregation has soft and hard time limits; a round that passes them fails with a plain reason, half of nothing."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from aggregation import rounds
from aggregation import tasks as agg_tasks
from aggregation.models import Contribution, Participant, Round
from tasks.versions import create_version
from tests.conftest import snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def aggregating(make_task, tiny_artifacts):
    task = make_task("slow")
    version = create_version(task, tiny_artifacts, origin="initial")
    rnd = Round.objects.create(task=task, number=1, base_version=version, status=Round.Status.AGGREGATING,
                               deadline=timezone.now(), aggregating_since=timezone.now())
    participant = Participant.objects.create(task=task, resume_token="slow")
    Contribution.objects.create(round=rnd, participant=participant, samples=1, blob="unused.frame", nbytes=0)
    return rnd


def test_the_limits_are_on_the_task_soft_below_hard(settings):
    assert agg_tasks.aggregate_round.soft_time_limit == settings.DISCO_AGGREGATION_SOFT_TIME_LIMIT == 300
    assert agg_tasks.aggregate_round.time_limit == settings.DISCO_AGGREGATION_TIME_LIMIT == 360


@pytest.mark.parametrize("where", ["_aggregate", "_open_round"])
def test_a_soft_timeout_fails_the_round_and_writes_nothing(aggregating, media_root, monkeypatch, where):
    calls = []

    def too_slow(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:  # the failed round's successor opens normally
            return open_round(*args, **kwargs)
        raise SoftTimeLimitExceeded()

    open_round = rounds._open_round
    if where == "_open_round":  # after the version's files are written: they are removed again
        monkeypatch.setattr(rounds, "_open_round", too_slow)
        monkeypatch.setattr(agg_tasks, "_aggregate", lambda rnd: agg_tasks.version_vector(rnd.base_version))
    else:
        monkeypatch.setattr(agg_tasks, "_aggregate", too_slow)
    before = snapshot(media_root)
    assert agg_tasks.aggregate_round(aggregating.pk) is None
    aggregating.refresh_from_db()
    assert aggregating.status == Round.Status.FAILED and aggregating.result_version is None
    assert aggregating.message.startswith("Aggregation took longer than 300 s (setting "
                                          "DISCO_AGGREGATION_SOFT_TIME_LIMIT) and was stopped; nothing was written.")
    assert aggregating.task.versions.count() == 1 and snapshot(media_root) == before
    aggregating.task.refresh_from_db()
    assert aggregating.task.current_version.number == 1
    # The next round is open, from the last good version.
    assert aggregating.task.rounds.get(number=2).base_version.number == 1


def test_a_round_still_aggregating_past_the_stuck_timeout_is_requeued_once_then_failed(aggregating, settings,
                                                                                        monkeypatch):
    from datetime import timedelta

    from aggregation import sweeper

    queued = []
    monkeypatch.setattr(sweeper, "_requeue_aggregation", queued.append)
    later = timezone.now() + timedelta(seconds=settings.DISCO_AGGREGATION_STUCK_AFTER + 1)
    assert sweeper.sweep(later).requeued_rounds == 1 and queued == [aggregating.pk]
    aggregating.refresh_from_db()
    assert aggregating.status == Round.Status.AGGREGATING and aggregating.aggregation_attempts == 1
    assert not sweeper.sweep(later)  # the re-queue restarted its clock
    even_later = later + timedelta(seconds=settings.DISCO_AGGREGATION_STUCK_AFTER + 1)
    assert sweeper.sweep(even_later).failed_rounds == 1 and queued == [aggregating.pk]
    aggregating.refresh_from_db()
    assert aggregating.status == Round.Status.FAILED
    assert "did not finish within 420 s (setting DISCO_AGGREGATION_STUCK_AFTER), twice" in aggregating.message
    assert not sweeper.sweep(even_later)  # only aggregating rounds are touched


def test_late_acknowledged_tasks_go_back_to_the_queue_when_their_worker_dies(settings):
    from disco_site.celery import app
    from tasks import tasks as conversion_tasks

    assert app.conf.task_reject_on_worker_lost and app.conf.task_acks_late
    for task in (agg_tasks.aggregate_round, conversion_tasks.convert_provider_model,
                 conversion_tasks.convert_uploaded_model):
        assert task.acks_late and task.reject_on_worker_lost, task.name
    # A task still running when the visibility timeout passes would be delivered a second time.
    longest = max(settings.DISCO_AGGREGATION_TIME_LIMIT,
                  *(a["time_limit"] for a in settings.CELERY_TASK_ANNOTATIONS.values()))
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > longest


def test_every_aggregation_worker_starts_the_sweeper_and_no_other(monkeypatch):
    from types import SimpleNamespace

    from aggregation import sweeper

    started = []
    monkeypatch.setattr(sweeper, "start_in_worker", lambda: started.append(True))

    def worker_of(*queues):
        return SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(
            consume_from={q: object() for q in queues}))))

    agg_tasks._start_sweeper(worker_of("conversion"))
    assert started == []
    agg_tasks._start_sweeper(worker_of("aggregation"))
    assert started == [True]
