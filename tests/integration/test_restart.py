"""Embedded mode across a real restart: the web process finds the work the previous one left unfinished.

On the database the environment selects (PostgreSQL under ``.ci/run``); embedded, since it is the embedded
web process that must find its jobs again."""

from __future__ import annotations

from tests.live_platform import LivePlatform, wait_for

PROVIDER = "tests.tasks.custom_provider.TinyProvider"

# Run in a separate process while the first platform is up: a task with a conversion job that is
# committed as queued but in no process's memory (the web process died before its thread took it),
# and a participant whose connection died with that process.
ORPHANS = """
from tasks.models import ConversionJob, Task
from tasks.providers import get_provider
from aggregation.models import Participant
spec = get_provider("tiny-custom").get_task()
task = Task.objects.create(**spec.as_fields(), provider=spec.id, published=True)
ConversionJob.objects.create(task=task, source="provider:tiny-custom")
Participant.objects.create(task=task, resume_token="stale", connected=True)
"""


def test_a_restarted_embedded_platform_runs_the_job_its_predecessor_left_queued(tmp_path):
    platform = LivePlatform(tmp_path, redis_url="", DISCO_TASK_PROVIDERS=PROVIDER, DISCO_SWEEP_SECONDS="0.5")
    query = platform.db.query
    try:
        platform.manage("migrate", "--noinput")
        first = platform.daphne()
        wait_for(lambda: "Recovered at start" in first.log_text(), timeout=60, what="the first platform's recovery")
        platform.manage("shell", "-c", ORPHANS)
        assert query("SELECT status FROM tasks_conversionjob") == [("queued",)]
        first.kill()  # as a crash would: its in-memory queue is gone with it
        assert query("SELECT status FROM tasks_conversionjob") == [("queued",)]
        second = platform.daphne()
        wait_for(lambda: query("SELECT status FROM tasks_conversionjob")[0][0] in ("done", "failed"),
                 timeout=300, what="the restarted platform to run the queued conversion job")
        status, message = query("SELECT status, message FROM tasks_conversionjob")[0]
        assert status == "done", (message, second.log_text()[-3000:])
        assert query("SELECT number FROM tasks_modelversion") == [(1,)]
        assert [bool(c) for (c,) in query("SELECT connected FROM aggregation_participant")] == [False]
    finally:
        platform.stop()
