"""Queue a Celery task after the current transaction commits, in whichever mode the platform runs.

- With a broker (``REDIS_URL`` set): ``task.delay`` sends it to the workers of its queue.
- Embedded (no broker): the task runs in this process on a background thread, so a web
  request that queues a conversion returns at once and its job shows queued -> running ->
  done as it would with a worker. One thread: jobs run one after another, as with one worker.
- Tests set ``celery_app.conf`` to eager mode and get the task run inline at commit.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import import_module
from typing import Any

from celery import Task
from django.db import close_old_connections, transaction

from .celery import app

log = logging.getLogger(__name__)
_executor: ThreadPoolExecutor | None = None


def _run_in_thread(task: Task, args: tuple[Any, ...]) -> None:
    close_old_connections()
    try:
        result = task.apply(args=args, throw=False)
        if result.failed():
            log.error("In-process job %s%r failed:\n%s", task.name, args, result.traceback)
    finally:
        close_old_connections()


def run_now(task: Task, *args: Any) -> Future | None:
    """Start ``task`` now: on the broker, inline (eager) or on the in-process thread."""
    global _executor
    if app.conf.task_always_eager or not app.conf.broker_url.startswith("memory"):
        task.delay(*args)
        return None
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="disco-jobs")
    return _executor.submit(_run_in_thread, task, args)


def enqueue_on_commit(task: Task, *args: Any) -> None:
    """Start ``task`` once the surrounding transaction has committed (at once outside one)."""
    transaction.on_commit(lambda: run_now(task, *args))


def run_later(task: Task, seconds: float, *args: Any) -> None:
    """Start ``task`` after ``seconds``: a countdown on the broker, a timer thread when embedded."""
    if app.conf.task_always_eager or not app.conf.broker_url.startswith("memory"):
        task.apply_async(args=args, countdown=max(0.0, seconds))
        return
    timer = threading.Timer(max(0.0, seconds), run_now, args=(task, *args))
    timer.daemon = True
    timer.start()


def task_named(name: str) -> Task:
    """The registered Celery task called ``name`` (e.g. ``"aggregation.tasks.aggregate_round"``).

    Services queue Celery tasks by name, so a service never imports the module of the Celery
    tasks that call it back (no import cycle); the module is imported here on first use.
    """
    if name not in app.tasks:
        import_module(name.rpartition(".")[0])
    return app.tasks[name]


def enqueue_named_on_commit(name: str, *args: Any) -> None:
    """``enqueue_on_commit`` for the Celery task called ``name``."""
    transaction.on_commit(lambda: run_now(task_named(name), *args))


def run_named_later(name: str, seconds: float, *args: Any) -> None:
    """``run_later`` for the Celery task called ``name``."""
    run_later(task_named(name), seconds, *args)
