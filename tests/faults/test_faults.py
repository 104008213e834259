"""Faults injected mid-round into the real stack: PostgreSQL, Redis, two daphne processes serving the same task,
Celery worker processes and four numpy participants (two on each daphne), three rounds, the fault in round 2.

Two cases are expected to fail until the rest of issue #12 is merged (their marks say which part they need).
Every case ends with the same checks (``Outcome.problems``): versions 1..4 and no other, no round that made two
versions, no round left open (but the next) or aggregating, and every surviving participant at version 4 with
exactly its weights.
"""

from __future__ import annotations

import pytest

from tests.faults.scenario import run_case

pytestmark = pytest.mark.faults


def check(name: str, tmp_path, fault_template):
    outcome, _ = run_case(name, tmp_path, fault_template)
    assert outcome.problems() == [], outcome
    return outcome


def test_participants_of_a_killed_daphne_finish_their_rounds_on_the_other(tmp_path, fault_template):
    outcome = check("daphne_killed", tmp_path, fault_template)
    assert sum(p.reconnects for p in outcome.participants) >= 2  # p0 and p2 went over to the other daphne


def test_a_worker_killed_while_aggregating_costs_one_redelivery_and_no_version(tmp_path, fault_template):
    check("aggregation_worker_killed", tmp_path, fault_template)


def test_a_pool_process_killed_while_aggregating_leaves_no_round_aggregating(tmp_path, fault_template):
    check("aggregation_pool_process_killed", tmp_path, fault_template)


def test_redis_restarted_empty_mid_round_loses_no_version(tmp_path, fault_template):
    check("redis_restarted", tmp_path, fault_template)


def test_redis_restarted_with_the_aggregation_queued_loses_no_version(tmp_path, fault_template):
    check("redis_restarted_before_aggregation", tmp_path, fault_template)


def test_a_conversion_worker_killed_mid_job_converts_once_after_a_restart(tmp_path, fault_template):
    outcome = check("conversion_worker_killed", tmp_path, fault_template)
    assert outcome.extra["conversion_jobs"] == [("done",)]
    assert [n for n, _, _ in outcome.extra["converted_versions"]] == [1]


def test_a_participant_that_vanishes_without_closing_is_left_out_at_the_deadline(tmp_path, fault_template):
    outcome = check("participant_vanished", tmp_path, fault_template)
    vanished = next(p for p in outcome.participants if p.vanished)
    assert vanished.version < 4  # it never saw the end
