"""Federated evaluation's service (aggregation.evaluations): checks, clamping, one report each, the weighted mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aggregation import evaluations
from aggregation.evaluations import EvaluationError, record, weighted_metrics
from aggregation.models import Evaluation, Participant, PeerRound, PeerTurn, Round
from tasks.versions import create_version
from tests.aggregation.round_fixtures import _round

pytestmark = pytest.mark.django_db


@pytest.fixture
def fed(make_task, tiny_artifacts, other_tiny_artifacts):
    """Round 1 closed into version 2, round 2 failed, round 3 superseded (result version 3), round 4 open."""
    task = make_task("fed", max_samples_per_update=1000)
    v1 = create_version(task, tiny_artifacts, origin="initial")
    v2 = create_version(task, other_tiny_artifacts, origin="round", round_number=1, parent=v1)
    v3 = create_version(task, tiny_artifacts, origin="round", round_number=3, parent=v2, make_current=False)
    _round(task, 1, "closed", base=v1, result=v2, seconds=5)
    _round(task, 2, "failed", base=v2, seconds=5)
    _round(task, 3, "superseded", base=v2, result=v3, seconds=5)
    _round(task, 4, "open", base=v2)
    return task


def participant(task, name: str) -> Participant:
    return Participant.objects.create(task=task, resume_token=f"{task.pk}-{name}", kind="python")


def report(number=1, *, version=2, loss=0.5, accuracy=0.75, samples=10) -> dict:
    return {"type": "evaluation", "round": number, "version": version, "loss": loss, "accuracy": accuracy,
            "samples": samples}


def metrics(rnd) -> tuple:
    rnd.refresh_from_db()
    return rnd.val_loss, rnd.val_accuracy, rnd.val_samples


def test_the_round_keeps_the_sample_weighted_mean_of_every_report(fed):
    a, b, c = (participant(fed, n) for n in "abc")
    reply = record(a, report(loss=1.0, accuracy=0.5, samples=10))
    assert reply == {"type": "evaluation_recorded", "round": 1, "version": 2, "samples": 10}
    rnd = Round.objects.get(task=fed, number=1)
    assert metrics(rnd) == (1.0, 0.5, 10)
    record(b, report(loss=2.0, accuracy=None, samples=30))  # a model without an accuracy metric
    record(c, report(loss=0.5, accuracy=1.0, samples=20))
    loss, accuracy, samples = metrics(rnd)
    assert samples == 60
    assert math.isclose(loss, (1.0 * 10 + 2.0 * 30 + 0.5 * 20) / 60)
    assert math.isclose(accuracy, (0.5 * 10 + 1.0 * 20) / 30)  # over the reports that have one
    assert Evaluation.objects.filter(round=rnd).count() == 3
    assert metrics(Round.objects.get(task=fed, number=3)) == (None, None, None)  # other rounds untouched


def test_a_superseded_rounds_result_can_be_evaluated(fed):
    record(participant(fed, "a"), report(3, version=3, loss=0.25, samples=4))
    assert metrics(Round.objects.get(task=fed, number=3)) == (0.25, 0.75, 4)


def test_the_sample_count_is_clamped_like_an_updates(fed):
    fed.max_samples_per_update = 25
    fed.save()
    a, b = participant(fed, "a"), participant(fed, "b")
    reply = record(a, report(loss=1.0, samples=100))
    assert reply["samples"] == 25 and "claimed 100" in reply["note"]
    record(b, report(loss=0.0, samples=25))
    assert metrics(Round.objects.get(task=fed, number=1))[0::2] == (0.5, 50)  # a weighs 25, not 100
    assert Evaluation.objects.get(participant=a).samples == 25


def test_a_second_report_on_the_same_round_is_refused_and_changes_nothing(fed):
    a = participant(fed, "a")
    record(a, report(loss=1.0))
    with pytest.raises(EvaluationError) as refused:
        record(a, report(loss=9.0, samples=500))
    assert refused.value.code == "duplicate_evaluation" and "already reported" in str(refused.value)
    assert metrics(Round.objects.get(task=fed, number=1)) == (1.0, 0.75, 10)
    record(a, report(3, version=3))  # another round is another report


@pytest.mark.parametrize(("fields", "code"), [
    ({"loss": float("nan")}, "bad_loss"), ({"loss": float("inf")}, "bad_loss"), ({"loss": -0.1}, "bad_loss"),
    ({"loss": "0.5"}, "bad_loss"), ({"loss": True}, "bad_loss"), ({"loss": None}, "bad_loss"),
    ({"accuracy": 1.5}, "bad_accuracy"), ({"accuracy": -0.01}, "bad_accuracy"),
    ({"accuracy": float("nan")}, "bad_accuracy"), ({"accuracy": "high"}, "bad_accuracy"),
    ({"samples": 0}, "bad_samples"), ({"samples": 2.5}, "bad_samples"), ({"samples": True}, "bad_samples"),
    ({"samples": "10"}, "bad_samples"), ({"samples": None}, "bad_samples"),
    ({"round": 0}, "bad_round"), ({"round": "1"}, "bad_round"), ({"round": None}, "bad_round"),
    ({"version": None}, "bad_version"), ({"version": 2.0}, "bad_version"),
])
def test_bad_numbers_are_refused_with_a_code(fed, fields, code):
    message = {**report(), **fields}
    with pytest.raises(EvaluationError) as refused:
        record(participant(fed, "a"), message)
    assert refused.value.code == code
    assert not Evaluation.objects.exists()
    assert metrics(Round.objects.get(task=fed, number=1)) == (None, None, None)


@pytest.mark.parametrize(("number", "version", "code", "words"), [
    (9, 2, "unknown_round", "no round 9"),
    (4, 2, "round_not_finished", "has not finished"),
    (2, 2, "round_not_finished", "failed and produced no model"),
    (1, 1, "wrong_version", "produced version 2, not 1"),
    (3, 2, "wrong_version", "produced version 3, not 2"),
])
def test_a_report_on_a_round_without_that_model_is_refused(fed, number, version, code, words):
    with pytest.raises(EvaluationError) as refused:
        record(participant(fed, "a"), report(number, version=version))
    assert refused.value.code == code and words in str(refused.value)
    assert not Evaluation.objects.exists()


def test_refusals_are_error_frames_marked_as_about_evaluation(fed):
    frame = evaluations.refusal(EvaluationError("bad_loss", "no"))
    assert frame == {"type": "error", "code": "bad_loss", "reason": "no", "about": "evaluation"}


@pytest.fixture
def dec(make_task):
    task = make_task("dec", scheme="decentralized", max_samples_per_update=1000)
    rnd = PeerRound.objects.create(task=task, number=1, status="closed")
    PeerRound.objects.create(task=task, number=2)
    return task, rnd


def test_decentralized_peers_that_finished_the_round_report_on_it(dec):
    task, rnd = dec
    a, b = participant(task, "a"), participant(task, "b")
    for p in (a, b):
        PeerTurn.objects.create(round=rnd, participant=p, selected=True, done_at=rnd.opened_at)
    reply = record(a, {"type": "evaluation", "round": 1, "loss": 0.4, "accuracy": 0.9, "samples": 30})
    assert reply == {"type": "evaluation_recorded", "round": 1, "samples": 30}  # no version: peers make none
    record(b, {"type": "evaluation", "round": 1, "loss": 0.8, "accuracy": 0.6, "samples": 10})
    loss, accuracy, samples = metrics(rnd)
    assert (samples, math.isclose(loss, 0.5), math.isclose(accuracy, 0.825)) == (40, True, True)
    assert Evaluation.objects.filter(peer_round=rnd, round=None).count() == 2


@pytest.mark.parametrize("turn", [None, {"selected": False}, {"selected": True}, {"selected": True, "left": True}])
def test_a_decentralized_report_from_a_peer_that_did_not_finish_the_round_is_refused(dec, turn):
    task, rnd = dec
    outsider = participant(task, "x")
    if turn is not None:
        PeerTurn.objects.create(round=rnd, participant=outsider, selected=turn["selected"],
                                left_at=rnd.opened_at if turn.get("left") else None)
    with pytest.raises(EvaluationError) as refused:
        record(outsider, {"type": "evaluation", "round": 1, "loss": 0.4, "accuracy": None, "samples": 30})
    assert refused.value.code == "not_in_round"
    with pytest.raises(EvaluationError) as unknown:
        record(outsider, {"type": "evaluation", "round": 7, "loss": 0.4, "accuracy": None, "samples": 30})
    assert unknown.value.code == "unknown_round"
    assert metrics(rnd) == (None, None, None) and not Evaluation.objects.exists()


def test_an_evaluation_belongs_to_exactly_one_round(fed, dec):
    from django.db import IntegrityError, transaction

    rnd = Round.objects.get(task=fed, number=1)
    for fields in ({}, {"round": rnd, "peer_round": dec[1]}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Evaluation.objects.create(participant=None, loss=1.0, samples=1, **fields)


def test_a_pruned_participants_report_still_counts(fed):
    a, b = participant(fed, "a"), participant(fed, "b")
    record(a, report(loss=1.0, samples=10))
    a.delete()
    record(b, report(loss=0.0, samples=10))
    assert metrics(Round.objects.get(task=fed, number=1))[0::2] == (0.5, 20)


def test_weighted_metrics_of_nothing_is_nothing():
    assert weighted_metrics([]) == (None, None, None)
    assert weighted_metrics([(1.0, None, 5)]) == (1.0, None, 5)


def test_recording_takes_a_bounded_number_of_queries(fed):
    """The mean is recomputed from the round's rows in one read, whatever the number of reports."""
    for name in "abcdef":
        record(participant(fed, name), report())
    with CaptureQueriesContext(connection) as queries:
        record(participant(fed, "g"), report())
    assert len(queries) < 20


@pytest.mark.parametrize(("count", "split", "held"), [(60, 0.2, 12), (150, 0.2, 30), (3, 0.1, 1), (1, 0.2, 0),
                                                      (10, 0.0, 0), (2, 0.9, 1)])
def test_python_clients_hold_out_the_tasks_validation_share_as_the_browser_does(count, split, held):
    from disco_client.remote import _rows, split_indices

    train, validation = split_indices(count, split)
    assert len(validation) == held and len(train) == count - held
    assert sorted([*train, *validation]) == list(range(count))  # every sample once, each part in order
    assert list(train) == sorted(train) and list(validation) == sorted(validation)
    assert np.array_equal(split_indices(count, split)[1], validation)  # the same each run
    x = np.arange(count * 2).reshape(count, 2)
    assert np.array_equal(_rows([x, x], validation)[1], x[validation])
    assert np.array_equal(_rows({"a": x}, train)["a"], x[train])
