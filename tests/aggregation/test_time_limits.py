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
                               deadline=timezone.now())
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


def test_a_round_still_aggregating_after_the_hard_limit_is_failed(aggregating):
    assert agg_tasks.fail_round_if_stuck(aggregating.pk) is True
    aggregating.refresh_from_db()
    assert aggregating.status == Round.Status.FAILED
    assert "hard time limit DISCO_AGGREGATION_TIME_LIMIT of 360 s" in aggregating.message
    assert agg_tasks.fail_round_if_stuck(aggregating.pk) is False  # only aggregating rounds are touched
