"""disco_site.jobs: queued tasks run after commit, inline under eager tests, on a thread when embedded."""

from __future__ import annotations

import threading

import pytest
from celery import shared_task
from django.db import transaction

from disco_site.celery import app
from disco_site.jobs import enqueue_on_commit, run_now

ran_in: list[tuple[str, int]] = []


@shared_task
def record_thread(value: int) -> int:
    ran_in.append((threading.current_thread().name, value))
    return value


@pytest.fixture(autouse=True)
def clear():
    ran_in.clear()


def test_embedded_mode_runs_the_task_on_a_background_thread():
    app.conf.CELERY_TASK_ALWAYS_EAGER = False
    original_broker = app.conf.broker_url
    app.conf.CELERY_BROKER_URL = "memory://"
    try:
        future = run_now(record_thread, 7)
        assert future is not None
        future.result(timeout=10)
    finally:
        app.conf.CELERY_BROKER_URL = original_broker
    assert len(ran_in) == 1
    name, value = ran_in[0]
    assert value == 7 and name.startswith("disco-jobs") and name != threading.current_thread().name


@pytest.mark.django_db(transaction=True)
def test_nothing_runs_before_commit_nor_after_a_rollback():
    with transaction.atomic():
        enqueue_on_commit(record_thread, 1)
        assert ran_in == []
    assert [v for _, v in ran_in] == [1]
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_on_commit(record_thread, 2)
        raise RuntimeError("rolled back")
    assert [v for _, v in ran_in] == [1]


def test_a_task_is_found_by_its_name_without_importing_its_module_first():
    from disco_site.jobs import task_named

    task = task_named("aggregation.tasks.sweep")
    assert task.name == "aggregation.tasks.sweep" and callable(task.delay)
