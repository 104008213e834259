"""A participant that lies about its sample count and sends a huge update, through the real federated consumer.

The predefined titanic model (10,857 parameters), three honest participants whose updates
move each weight by about 0.01, and one attacker that adds 50 to every weight and claims
10^9 samples. Before the bounds, FedAvg gave the attacker a weight of 1 - 3e-7: the next
version *was* the attacker's model. Aggregation runs in-process (eager Celery).
"""

from __future__ import annotations

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from aggregation.aggregators import mean
from aggregation.models import Contribution
from aggregation.weights import version_vector
from tasks.default_tasks.titanic import TitanicProvider
from tasks.models import ModelVersion, Task
from tasks.versions import create_version
from tests.aggregation.test_consumer import update_frame
from tests.aggregation.websockets import connect, receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_modes]

HONEST_SAMPLES = (100, 120, 80)
LIAR_SAMPLES = 10**9


@pytest.fixture(scope="module")
def titanic_artifacts():
    from tasks.conversion import keras_model_to_tfjs

    return keras_model_to_tfjs(TitanicProvider().get_model())


def _titanic(artifacts, **settings) -> Task:
    values = {**TitanicProvider().get_task().as_fields(), "published": True, **settings}
    task = Task(**values)
    task.full_clean()
    task.save()
    create_version(task, artifacts, origin="initial")
    task.refresh_from_db()
    assert task.current_version.weight_specs  # cached now: async code may read it without a query
    return task


def _updates(base: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(11)
    honest = [base + 0.01 * rng.standard_normal(base.size).astype(np.float32) for _ in HONEST_SAMPLES]
    return honest, base + np.float32(50)


async def _round(task: Task, honest: list[np.ndarray], liar: np.ndarray, *, liar_leaves: bool = False):
    sockets = [await connect(f"/ws/federated/{task.pk}/") for _ in range(len(honest) + 1)]
    for ws in sockets:
        await receive(ws, "welcome")
    *good, bad = sockets
    await bad.send_to(bytes_data=update_frame(task, vector=liar, samples=LIAR_SAMPLES))
    reply = await receive(bad, "error" if task.max_update_norm else "accepted")
    if liar_leaves:
        await bad.disconnect()
    for ws, vector, samples in zip(good, honest, HONEST_SAMPLES, strict=True):
        await ws.send_to(bytes_data=update_frame(task, vector=vector, samples=samples))
        await receive(ws, "accepted")
    closed = await receive(good[0], "round_closed")
    for ws in sockets if not liar_leaves else good:
        await ws.disconnect()
    new = await sync_to_async(lambda: version_vector(ModelVersion.objects.get(task=task, number=closed["version"])))()
    return reply, closed, new


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b))


async def test_a_liar_gets_one_share_of_the_weight_not_all_of_it(titanic_artifacts):
    # Prepare: the default bounds (maxSamplesPerUpdate 100,000, maxContributionShare 0.25).
    task = await sync_to_async(_titanic)(titanic_artifacts, min_participants=4)
    base = await sync_to_async(version_vector)(task.current_version)
    honest, liar = _updates(base)
    # Execute
    reply, closed, new = await _round(task, honest, liar)
    # Assert: the claim was clamped, and the liar counts as one participant in four.
    assert reply["samples"] == 100_000 and "maxSamplesPerUpdate" in reply["note"]
    assert closed["contributors"] == 4
    stored = await sync_to_async(lambda: sorted(Contribution.objects.values_list("samples", flat=True)))()
    assert stored == [80, 100, 120, 100_000]
    honest_mean = np.mean(honest, axis=0, dtype=np.float64)
    liar_gap = _distance(liar, honest_mean)
    old = mean(np.stack([*honest, liar]), np.array([*HONEST_SAMPLES, LIAR_SAMPLES]))  # FedAvg before the bounds
    old_pull, new_pull = _distance(old, honest_mean) / liar_gap, _distance(new, honest_mean) / liar_gap
    print(f"\nliar's distance from the honest mean {liar_gap:.1f}; the next version's: "
          f"before the bounds {old_pull:.7f} of it, now {new_pull:.7f}")
    assert old_pull > 0.9999  # the old next version was the attacker's model
    assert new_pull == pytest.approx(0.25, abs=1e-4)  # now: its share, 0.25, and no more
    np.testing.assert_allclose(new, np.mean([*honest, liar], axis=0), atol=1e-4)


async def test_the_norm_bound_refuses_the_huge_update_and_keeps_the_honest_mean(titanic_artifacts):
    task = await sync_to_async(_titanic)(titanic_artifacts, min_participants=3, max_update_norm=5.0)
    base = await sync_to_async(version_vector)(task.current_version)
    honest, liar = _updates(base)
    error, closed, new = await _round(task, honest, liar, liar_leaves=True)
    assert error["code"] == "update_norm"
    assert "5 (maxUpdateNorm)" in error["reason"] and f"{50 * np.sqrt(base.size):.6g}"[:4] in error["reason"]
    assert closed["contributors"] == 3
    honest_mean = np.mean(honest, axis=0, dtype=np.float64)
    distance = _distance(new, honest_mean)
    print(f"\nwith maxUpdateNorm 5: the next version is {distance:.2e} from the honest mean "
          f"(the liar's update: {_distance(liar, honest_mean):.1f})")
    assert distance < 1e-4
