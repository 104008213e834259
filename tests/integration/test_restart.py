"""Embedded mode across a real restart: the web process finds the work the previous one left unfinished."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.live_platform import daphne, manage, platform_env, wait_for

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


def query(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / "db.sqlite3", timeout=30) as conn:
        return conn.execute(sql).fetchall()


def test_a_restarted_embedded_platform_runs_the_job_its_predecessor_left_queued(tmp_path):
    env = platform_env(tmp_path, DISCO_TASK_PROVIDERS=PROVIDER, DISCO_SWEEP_SECONDS="0.5")
    manage(env, "migrate", "--noinput")
    log = tmp_path / "daphne.log"
    with daphne(env, log):
        wait_for(lambda: "Recovered at start" in log.read_text(), timeout=60, what="the first platform's recovery")
        manage(env, "shell", "-c", ORPHANS)
        assert query(tmp_path, "SELECT status FROM tasks_conversionjob") == [("queued",)]
    # The first platform is gone, its queue with it: the job is still queued in the database.
    assert query(tmp_path, "SELECT status FROM tasks_conversionjob") == [("queued",)]
    with daphne(env, log):
        wait_for(lambda: query(tmp_path, "SELECT status FROM tasks_conversionjob")[0][0] in ("done", "failed"),
                 timeout=300, what="the restarted platform to run the queued conversion job")
        status, message = query(tmp_path, "SELECT status, message FROM tasks_conversionjob")[0]
        assert status == "done", (message, log.read_text()[-3000:])
        assert query(tmp_path, "SELECT number FROM tasks_modelversion") == [(1,)]
        assert query(tmp_path, "SELECT connected FROM aggregation_participant") == [(0,)]
