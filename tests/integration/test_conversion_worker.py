"""Model conversion through a real Redis broker and a real Celery worker process."""

from __future__ import annotations

import sqlite3

import pytest
import redis

from tests.live_platform import manage, platform_env, worker

pytestmark = pytest.mark.services
REDIS_URL = "redis://127.0.0.1:6379/14"  # a database of its own, flushed by the test


def test_a_conversion_worker_builds_the_initial_versions(tmp_path):
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = platform_env(tmp_path, REDIS_URL=REDIS_URL)
    manage(env, "migrate", "--noinput")
    with worker(env, tmp_path / "worker.log"):
        first = manage(env, "load_default_tasks", "--only", "titanic", "lus_covid", "--timeout", "300")
        again = manage(env, "load_default_tasks", "--only", "titanic", "lus_covid", "--timeout", "300")
    log = (tmp_path / "worker.log").read_text()
    assert "tasks.tasks.convert_provider_model" in log and "succeeded" in log
    assert "titanic: conversion done: Stored version 1: 10,857 parameters." in first.stdout
    assert "lus_covid: conversion done" in first.stdout
    assert "titanic: exists; current model version 1" in again.stdout
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        versions = db.execute("SELECT task_id, number, origin FROM tasks_modelversion ORDER BY task_id").fetchall()
        jobs = db.execute("SELECT status FROM tasks_conversionjob").fetchall()
    assert versions == [("lus_covid", 1, "initial"), ("titanic", 1, "initial")]
    assert jobs == [("done",), ("done",)]


def test_without_a_worker_the_command_says_what_to_start(tmp_path):
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = platform_env(tmp_path, REDIS_URL=REDIS_URL)
    manage(env, "migrate", "--noinput")
    with pytest.raises(AssertionError, match="Is a conversion worker running"):
        manage(env, "load_default_tasks", "--only", "titanic", "--timeout", "2")
