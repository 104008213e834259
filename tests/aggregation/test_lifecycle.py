"""The federated round lifecycle has one owner: results become current only by compare-and-swap,
failures are conditional and announced, and the next round starts from the last good version."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.core.files.base import ContentFile
from django.db import connection, connections

from aggregation import rounds, sweeper
from aggregation import tasks as agg_tasks
from aggregation.models import Round
from disco_client.codec import decode_weights
from tasks.versions import create_version, set_current_version
from tests.aggregation.test_consumer import update_frame
from tests.aggregation.websockets import connect, receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_modes]


@pytest.fixture
def two_versions(make_task, tiny_artifacts, other_tiny_artifacts):
    """A federated task with versions 1 and 2 (current), and two participants' minimum."""
    task = make_task("life", min_participants=2, max_contribution_share=1.0)
    create_version(task, tiny_artifacts, origin="initial")
    create_version(task, other_tiny_artifacts, origin="upload")
    task.refresh_from_db()
    assert task.current_version.number == 2
    return task


def close_round_one(task) -> Round:
    """Two participants send round 1's updates (trained from the current version); the round closes."""
    task.refresh_from_db()
    for fill in (0.5, 1.5):
        participant, _ = rounds.join(task)
        frame = update_frame(task, fill=fill, round_number=1, base=task.current_version.number)
        rnd = rounds.active_round(task)
        rounds.submit(participant, decode_weights(frame, expected=rounds.expected_specs(rnd)), ContentFile(frame))
    rnd = Round.objects.get(task=task, number=1)
    assert rnd.status == Round.Status.AGGREGATING
    return rnd


def test_a_result_becomes_current_when_its_base_still_is(two_versions, held):
    rnd = close_round_one(two_versions)
    assert (rounds.AGGREGATE_ROUND, (rnd.pk,)) in held
    pk = agg_tasks.aggregate_round(rnd.pk)
    rnd.refresh_from_db()
    two_versions.refresh_from_db()
    assert rnd.status == Round.Status.CLOSED and rnd.result_version_id == pk
    assert two_versions.current_version.number == 3 and two_versions.current_version.parent.number == 2
    assert rnd.message == "Aggregated 2 updates with mean into version 3."
    assert Round.objects.get(task=two_versions, number=2).base_version.number == 3


def test_a_rollback_during_the_round_is_not_undone(two_versions, held, client):
    rnd = close_round_one(two_versions)  # from version 2
    set_current_version(two_versions, 1)  # a curator rolls back while the round aggregates
    pk = agg_tasks.aggregate_round(rnd.pk)
    rnd.refresh_from_db()
    two_versions.refresh_from_db()
    # The result is stored (version 3, child of the round's base), but the rollback stands.
    assert two_versions.current_version.number == 1
    assert rnd.status == Round.Status.SUPERSEDED and rnd.result_version_id == pk
    assert rnd.result_version.number == 3 and rnd.result_version.parent.number == 2
    assert rnd.message.startswith("Superseded: version 1 was made current while round 1 ran from version 2")
    assert "stored as version 3 but not made current" in rnd.message
    assert "not made current: version 1 became current" in rnd.result_version.note
    # The next round starts from the version the curator chose.
    assert Round.objects.get(task=two_versions, number=2).base_version.number == 1
    # The task page shows why version 3 is not current.
    page = client.get("/tasks/life/").content.decode()
    assert "not made current: version 1 became current while round 1 ran from version 2." in page


def test_a_new_upload_during_the_round_is_not_undone(two_versions, held, tiny_artifacts):
    rnd = close_round_one(two_versions)
    create_version(two_versions, tiny_artifacts, origin="upload")  # version 3, made current by its owner
    agg_tasks.aggregate_round(rnd.pk)
    rnd.refresh_from_db()
    two_versions.refresh_from_db()
    assert two_versions.current_version.number == 3 and rnd.status == Round.Status.SUPERSEDED
    assert rnd.result_version.number == 4 and rnd.result_version.origin == "round"


def test_an_upload_of_another_shape_during_the_round_stays_current(two_versions, held):
    from disco_client.keras_env import tf_keras
    from tasks.conversion import keras_model_to_tfjs

    keras = tf_keras()
    wider = keras.Sequential([keras.layers.Input(shape=(4,)), keras.layers.Dense(5, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    rnd = close_round_one(two_versions)
    create_version(two_versions, keras_model_to_tfjs(wider), origin="upload")  # version 3: 5 hidden units
    agg_tasks.aggregate_round(rnd.pk)
    rnd.refresh_from_db()
    two_versions.refresh_from_db()
    assert two_versions.current_version.number == 3 and rnd.status == Round.Status.SUPERSEDED
    assert [s["shape"] for s in rnd.result_version.weight_specs][0] == [4, 3]  # the round's own shapes
    following = Round.objects.get(task=two_versions, number=2)
    assert following.base_version.number == 3 and [s["shape"] for s in following.base_version.weight_specs][0] == [4, 5]


def test_a_duplicate_delivery_writes_exactly_one_version(two_versions, held, media_root):
    rnd = close_round_one(two_versions)
    first = agg_tasks.aggregate_round(rnd.pk)
    files = sorted(p.name for p in (media_root / "models" / "life").iterdir())
    assert agg_tasks.aggregate_round(rnd.pk) == first  # the broker delivered it again
    assert two_versions.versions.count() == 3
    assert sorted(p.name for p in (media_root / "models" / "life").iterdir()) == files
    assert Round.objects.filter(task=two_versions).count() == 2  # one next round, not two


def test_finish_twice_writes_once(two_versions, held):
    """Two deliveries that both computed the aggregate: the second finds the round finished."""
    rnd = close_round_one(two_versions)
    artifacts = agg_tasks.artifacts_from_vector(rnd.base_version, agg_tasks._aggregate(rnd))
    first = rounds.finish(rnd.pk, artifacts)
    second = rounds.finish(rnd.pk, artifacts)
    assert first.written and first.status == Round.Status.CLOSED
    assert not second.written and second.result_version_id == first.result_version_id
    assert two_versions.versions.count() == 3


def test_a_failure_after_another_delivery_closed_the_round_changes_nothing(two_versions, held):
    rnd = close_round_one(two_versions)
    agg_tasks.aggregate_round(rnd.pk)
    rnd.refresh_from_db()
    before = (rnd.status, rnd.message, rnd.result_version_id, rnd.closed_at)
    assert rounds.fail(rnd.pk, "a late delivery timed out") is False
    assert sweeper._fail_federated(rnd.pk, "stuck") is False
    rnd.refresh_from_db()
    assert (rnd.status, rnd.message, rnd.result_version_id, rnd.closed_at) == before
    assert Round.objects.filter(task=two_versions).count() == 2
    assert Round.objects.get(task=two_versions, number=2).status == Round.Status.OPEN


def test_a_failed_round_is_finished_by_nothing_later(two_versions, held):
    rnd = close_round_one(two_versions)
    assert rounds.fail(rnd.pk, "the worker died") is True
    assert rounds.fail(rnd.pk, "again") is False
    assert agg_tasks.aggregate_round(rnd.pk) is None  # a late delivery of the task writes nothing
    rnd.refresh_from_db()
    assert rnd.status == Round.Status.FAILED and rnd.message == "the worker died"
    assert two_versions.versions.count() == 2
    assert Round.objects.get(task=two_versions, number=2).base_version.number == 2


def test_too_few_updates_for_the_aggregator_fail_the_round_with_the_reason(two_versions, held):
    rnd = close_round_one(two_versions)
    # The settings changed after the round closed (validation keeps them consistent otherwise).
    two_versions.__class__.objects.filter(pk=two_versions.pk).update(aggregator="multi_krum",
                                                                      aggregator_params={"f": 0, "m": 3})
    assert agg_tasks.aggregate_round(rnd.pk) is None
    rnd.refresh_from_db()
    assert rnd.status == Round.Status.FAILED
    assert rnd.message.startswith("Multi-Krum cannot aggregate 2 updates: f=0 needs at least 2f+3 = 3 and m=3 "
                                  "averages the 3 best. Raise the task's minimum number of participants to at "
                                  "least 3, or lower the aggregator's parameters.")
    assert two_versions.versions.count() == 2


def test_the_next_round_after_a_failure_opens_from_the_version_in_the_database(two_versions, held):
    rnd = close_round_one(two_versions)
    stale = two_versions  # an object that still says version 2 is current
    set_current_version(two_versions.__class__.objects.get(pk=stale.pk), 1)
    assert stale.current_version.number == 2
    rounds.fail(rnd.pk, "the worker died")
    assert rounds.active_round(stale).base_version.number == 1


def test_active_round_opens_from_the_version_in_the_database(two_versions):
    stale = two_versions.__class__.objects.select_related("current_version").get(pk=two_versions.pk)
    set_current_version(two_versions, 1)
    assert stale.current_version.number == 2
    assert rounds.active_round(stale).base_version.number == 1


async def test_round_failed_reaches_participants_and_the_next_round_starts_from_the_last_good_version(
        two_versions):
    a = await connect("/ws/federated/life/")
    b = await connect("/ws/federated/life/")
    assert (await receive(a, "welcome"))["currentVersion"] == 2
    await receive(b, "welcome")
    frames = [update_frame(two_versions, fill=fill, base=2) for fill in (0.5, 1.5)]  # trained from version 2
    # While round 1 runs from version 2, a curator rolls back to 1 and an edit leaves Krum short of updates.
    await sync_to_async(set_current_version)(two_versions, 1)
    await sync_to_async(lambda: two_versions.__class__.objects.filter(pk="life").update(
        aggregator="krum", aggregator_params={"f": 1}))()
    await a.send_to(bytes_data=frames[0])
    await receive(a, "accepted")
    await b.send_to(bytes_data=frames[1])
    failed_a, failed_b = await receive(a, "round_failed"), await receive(b, "round_failed")
    assert failed_a == failed_b
    assert failed_a["round"] == 1 and failed_a["nextRound"] == 2 and failed_a["version"] == 1
    assert failed_a["reason"].startswith("Krum cannot aggregate 2 updates: f=1 needs at least 2f+3 = 5.")
    assert failed_a["modelUrl"] == "/tasks/life/versions/1/model.json"
    rnd2 = await sync_to_async(lambda: Round.objects.select_related("base_version").get(task_id="life", number=2))()
    assert rnd2.status == Round.Status.OPEN and rnd2.base_version.number == 1
    await a.disconnect()
    await b.disconnect()


async def test_a_superseded_round_tells_participants_where_the_next_round_starts(two_versions):
    a = await connect("/ws/federated/life/")
    await receive(a, "welcome")
    b = await connect("/ws/federated/life/")
    await receive(b, "welcome")
    frames = [update_frame(two_versions, fill=fill, base=2) for fill in (0.5, 1.5)]  # trained from version 2
    await sync_to_async(set_current_version)(two_versions, 1)  # a curator rolls back during the round
    await a.send_to(bytes_data=frames[0])
    await receive(a, "accepted")
    await b.send_to(bytes_data=frames[1])
    closed = await receive(a, "round_closed")
    assert closed["superseded"] is True and closed["resultVersion"] == 3
    assert closed["version"] == 1 and closed["nextRound"] == 2
    assert closed["modelUrl"] == "/tasks/life/versions/1/model.json"
    assert closed["reason"].startswith("Superseded: version 1 was made current")
    await a.disconnect()
    await b.disconnect()


def test_two_deliveries_at_once_write_one_version(two_versions, held, monkeypatch):
    """Two workers run the same round at the same moment: the task's row lock lets one write."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises every write anyway; the row lock matters on PostgreSQL")
    rnd = close_round_one(two_versions)
    barrier = threading.Barrier(2)
    finish = rounds.finish

    def synchronised_finish(round_id, artifacts, server_step=None):
        barrier.wait(timeout=10)  # both have computed the aggregate before either writes
        return finish(round_id, artifacts, server_step)

    def deliver(_) -> int | None:
        try:
            return agg_tasks.aggregate_round(rnd.pk)
        finally:
            connections.close_all()

    monkeypatch.setattr(rounds, "finish", synchronised_finish)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(deliver, range(2)))
    assert results[0] == results[1] is not None
    assert two_versions.versions.count() == 3
    assert Round.objects.filter(task=two_versions).count() == 2
