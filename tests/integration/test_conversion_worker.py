"""Model conversion through a real Redis broker and a real Celery worker process."""

from __future__ import annotations

import pytest

from tests.live_platform import LivePlatform

pytestmark = pytest.mark.services


@pytest.fixture
def live(tmp_path):
    """A fresh database of the environment's kind (PostgreSQL or SQLite) and the environment's Redis, flushed."""
    platform = LivePlatform(tmp_path)
    platform.manage("migrate", "--noinput")
    yield platform
    platform.stop()


def test_a_conversion_worker_builds_the_initial_versions(live):
    worker = live.worker("conversion", pool="solo")
    first = live.manage("load_default_tasks", "--only", "titanic", "lus_covid", "--timeout", "300")
    again = live.manage("load_default_tasks", "--only", "titanic", "lus_covid", "--timeout", "300")
    log = worker.log_text()
    assert "tasks.tasks.convert_provider_model" in log and "succeeded" in log
    assert "titanic: conversion done: Stored version 1: 10,857 parameters." in first.stdout
    assert "lus_covid: conversion done" in first.stdout
    assert "titanic: exists; current model version 1" in again.stdout
    versions = live.db.query("SELECT task_id, number, origin FROM tasks_modelversion ORDER BY task_id")
    jobs = live.db.query("SELECT status FROM tasks_conversionjob")
    assert versions == [("lus_covid", 1, "initial"), ("titanic", 1, "initial")]
    assert jobs == [("done",), ("done",)]


def test_without_a_worker_the_command_says_what_to_start(live):
    with pytest.raises(AssertionError, match="Is a conversion worker running"):
        live.manage("load_default_tasks", "--only", "titanic", "--timeout", "2")
