"""Queue a Celery task after the current transaction commits, in whichever mode the platform runs.

- With a broker (``REDIS_URL`` set): ``task.delay`` sends it to the workers of its queue.
- Embedded (no broker): the task runs in this process on a background thread, so a web
  request that queues a conversion returns at once and its job shows queued -> running ->
  done as it would with a worker. One thread: jobs run one after another, as with one worker.
- Tests set ``celery_app.conf`` to eager mode and get the task run inline at commit.

Nothing is ever scheduled for later here: deadlines are columns that ``aggregation.sweeper``
enforces, and ``run_every`` runs such periodic work on a thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
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
    if not embedded():
        task.delay(*args)
        return None
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="disco-jobs")
    return _executor.submit(_run_in_thread, task, args)


def enqueue_on_commit(task: Task, *args: Any) -> None:
    """Start ``task`` once the surrounding transaction has committed (at once outside one)."""
    transaction.on_commit(lambda: run_now(task, *args))


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


def embedded() -> bool:
    """No broker: queued tasks run on this process's thread (and tests' eager mode is off)."""
    return not app.conf.task_always_eager and app.conf.broker_url.startswith("memory")


def run_every(seconds: float, function: Callable[[], Any], *, name: str, first_after: float = 0.0) -> threading.Event:
    """Call ``function`` on a daemon thread after ``first_after`` s, then every ``seconds`` (once if 0).

    For periodic work that keeps no deadline of its own (the sweeper, the heartbeat): a call that
    raises is logged and the next one comes on time. Set the returned event to stop the thread.
    """
    stop = threading.Event()

    def loop() -> None:
        if stop.wait(first_after):
            return
        while True:
            close_old_connections()
            try:
                function()
            except Exception:
                log.exception("Periodic %s failed; trying again in %s s", name, seconds)
            finally:
                close_old_connections()
            if seconds <= 0 or stop.wait(seconds):
                return

    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop
