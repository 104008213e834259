"""The fault-injection suite runs on PostgreSQL + Redis (`.ci/run`); elsewhere its tests are skipped."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        return
    skip = pytest.mark.skip(reason="the faults suite runs on PostgreSQL + Redis: set DATABASE_URL and REDIS_URL "
                                   "(as .ci/run does)")
    for item in items:
        if item.get_closest_marker("faults"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fault_template(tmp_path_factory):
    """A database migrated and loaded once, copied by every case (PostgreSQL copies a template database at once)."""
    from tests.faults.scenario import make_template

    template = make_template(tmp_path_factory.mktemp("fault-template"))
    yield template
    template.stop()
