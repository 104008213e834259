"""Server optimizers in federated rounds: the new version is the optimizer's step from the round's base, its
state survives a restart, advances only when the round's version becomes current, and starts afresh (said in the
round's message) when the round's base is not the version the state was computed up to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile

from aggregation import rounds
from aggregation import tasks as agg_tasks
from aggregation.models import Participant, Round, ServerOptimizerState
from aggregation.optimizer_state import read_arrays
from aggregation.server_optimizers import fedadam, fedavgm
from aggregation.weights import version_vector
from disco_client.codec import decode_weights
from tasks.versions import create_version, set_current_version
from tests.aggregation import optimizer_process
from tests.aggregation.test_consumer import update_frame
from tests.live_platform import manage, platform_env

pytestmark = pytest.mark.django_db(transaction=True)

LR, MOMENTUM = 0.5, 0.8
SAMPLES = (10, 30)  # shares 0.25 and 0.75 of the weighted mean


@pytest.fixture
def fedavgm_task(make_task, tiny_artifacts):
    task = make_task("opt", min_participants=2, max_contribution_share=1.0, server_optimizer="fedavgm",
                     server_optimizer_params={"lr": LR, "momentum": MOMENTUM})
    create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    return task


def updates(number: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(100 + number)
    return [rng.normal(size=size).astype(np.float32) for _ in SAMPLES]


def close_round(task, number: int, vectors: list[np.ndarray]) -> Round:
    """Two participants send ``vectors`` for round ``number``, trained from the current version; it closes."""
    task.refresh_from_db()
    Participant.objects.filter(task=task).update(connected=False)  # last round's participants have left
    for samples, vector in zip(SAMPLES, vectors, strict=True):
        participant, _ = rounds.join(task)
        frame = update_frame(task, vector=vector, samples=samples, round_number=number,
                             base=task.current_version.number)
        rnd = rounds.active_round(task)
        rounds.submit(participant, decode_weights(frame, expected=rounds.expected_specs(rnd)), ContentFile(frame))
    rnd = Round.objects.get(task=task, number=number)
    assert rnd.status == Round.Status.AGGREGATING
    return rnd


def weighted(vectors: list[np.ndarray]) -> np.ndarray:
    """The sample-weighted mean as the streaming mean computes it (float32, one update at a time)."""
    return np.float32(0.25) * vectors[0] + np.float32(0.75) * vectors[1]


def test_two_fedavgm_rounds_are_the_pure_function_and_base_plus_lr_times_momentum(fedavgm_task, held):
    # Prepare
    task = fedavgm_task
    w0 = version_vector(task.current_version)
    u1, u2 = updates(1, w0.size), updates(2, w0.size)
    # Execute: round 1 from version 1, round 2 from version 2
    agg_tasks.aggregate_round(close_round(task, 1, u1).pk)
    task.refresh_from_db()
    w1 = version_vector(task.current_version)
    agg_tasks.aggregate_round(close_round(task, 2, u2).pk)
    task.refresh_from_db()
    w2 = version_vector(task.current_version)
    # Assert: the pure function, step by step
    a1, a2 = weighted(u1), weighted(u2)
    expected1, m1 = fedavgm(w0, a1, None, lr=LR, beta=MOMENTUM)
    expected2, m2 = fedavgm(w1, a2, m1, lr=LR, beta=MOMENTUM)
    assert task.current_version.number == 3
    np.testing.assert_array_equal(w1, expected1)
    np.testing.assert_array_equal(w2, expected2)
    # ... and by hand in float64: m1 = d1, m2 = momentum * d1 + d2, w2 = w1 + lr * m2
    d1 = a1.astype(np.float64) - w0
    d2 = a2.astype(np.float64) - w1
    np.testing.assert_allclose(w1, w0 + LR * d1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w2, w1 + LR * (MOMENTUM * d1 + d2), rtol=1e-6, atol=1e-6)
    assert not np.allclose(w2, a2, atol=1e-3)  # not what "none" would have made
    state = ServerOptimizerState.objects.get(task=task)
    assert state.optimizer == "fedavgm" and state.steps == 2 and state.version == task.current_version
    np.testing.assert_array_equal(read_arrays(state.blob)["momentum"], m2)
    message = Round.objects.get(task=task, number=2).message
    assert message == "Aggregated 2 updates with mean, then a FedAvgM server step (step 2 of its state) into version 3."


def test_without_a_server_optimizer_the_aggregate_is_the_new_model(make_task, tiny_artifacts, held):
    task = make_task("plain", min_participants=2, max_contribution_share=1.0)
    create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    u1 = updates(1, version_vector(task.current_version).size)
    rnd = close_round(task, 1, u1)
    agg_tasks.aggregate_round(rnd.pk)
    task.refresh_from_db()
    np.testing.assert_array_equal(version_vector(task.current_version), weighted(u1))
    assert not ServerOptimizerState.objects.filter(task=task).exists()
    assert Round.objects.get(pk=rnd.pk).message == "Aggregated 2 updates with mean into version 2."


def test_fedadam_rounds_carry_both_moments_and_the_step(make_task, tiny_artifacts, held):
    params = {"lr": 0.05, "beta1": 0.9, "beta2": 0.99, "epsilon": 0.01}
    task = make_task("adam", min_participants=2, max_contribution_share=1.0, server_optimizer="fedadam",
                     server_optimizer_params=params)
    create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    w0 = version_vector(task.current_version)
    u1, u2 = updates(1, w0.size), updates(2, w0.size)
    agg_tasks.aggregate_round(close_round(task, 1, u1).pk)
    task.refresh_from_db()
    w1 = version_vector(task.current_version)
    agg_tasks.aggregate_round(close_round(task, 2, u2).pk)
    task.refresh_from_db()
    expected1, s1 = fedadam(w0, weighted(u1), None, lr=0.05, beta1=0.9, beta2=0.99, tau=0.01)
    expected2, s2 = fedadam(w1, weighted(u2), s1, lr=0.05, beta1=0.9, beta2=0.99, tau=0.01)
    np.testing.assert_array_equal(w1, expected1)
    np.testing.assert_array_equal(version_vector(task.current_version), expected2)
    stored = read_arrays(ServerOptimizerState.objects.get(task=task).blob)
    np.testing.assert_array_equal(stored["m"], s2.m)
    np.testing.assert_array_equal(stored["v"], s2.v)
    assert int(stored["step"]) == s2.step == 2


def test_a_superseded_round_does_not_advance_the_state(fedavgm_task, held, tiny_artifacts, other_tiny_artifacts,
                                                       media_root):
    # Prepare: round 1 steps; round 2 closes, then a curator uploads a model while it aggregates
    task = fedavgm_task
    w0 = version_vector(task.current_version)
    agg_tasks.aggregate_round(close_round(task, 1, updates(1, w0.size)).pk)
    after_one = ServerOptimizerState.objects.get(task=task)
    momentum_one = read_arrays(after_one.blob)["momentum"]
    rnd = close_round(task, 2, updates(2, w0.size))
    create_version(task, other_tiny_artifacts, origin="upload")  # version 3 becomes current
    # Execute
    agg_tasks.aggregate_round(rnd.pk)
    # Assert: the round is superseded, the state is round 1's, and no state file of round 2 is left behind
    rnd.refresh_from_db()
    assert rnd.status == Round.Status.SUPERSEDED
    assert rnd.message.endswith("The server optimizer's state did not advance.")
    state = ServerOptimizerState.objects.get(task=task)
    assert (state.steps, state.version_id, state.blob) == (1, after_one.version_id, after_one.blob)
    np.testing.assert_array_equal(read_arrays(state.blob)["momentum"], momentum_one)
    files = sorted(p.name for p in (media_root / "optimizer_state" / task.pk).iterdir())
    assert files == [Path(after_one.blob).name]


def test_a_late_duplicate_delivery_leaves_the_state_alone(fedavgm_task, held, media_root):
    task = fedavgm_task
    rnd = close_round(task, 1, updates(1, version_vector(task.current_version).size))
    first = agg_tasks.aggregate_round(rnd.pk)
    state = ServerOptimizerState.objects.get(task=task)
    # A second delivery of the same round: the round is closed, nothing is computed or written again
    assert agg_tasks.aggregate_round(rnd.pk) == first
    # Even a computed step handed to finish late is discarded, not recorded
    vector, step = agg_tasks.optimizer_state.server_step(task, rnd.base_version, version_vector(rnd.base_version),
                                                         version_vector(rnd.base_version), rnd.number)
    assert Path(media_root / step.blob).exists()
    artifacts = agg_tasks.artifacts_from_vector(rnd.base_version, vector)
    assert not rounds.finish(rnd.pk, artifacts, step).written
    assert not Path(media_root / step.blob).exists()
    after = ServerOptimizerState.objects.get(task=task)
    assert (after.steps, after.blob) == (state.steps, state.blob) == (1, state.blob)


def test_a_rollback_resets_the_state_and_the_round_says_so(fedavgm_task, held):
    # Prepare: two rounds step the state up to version 3; a curator rolls back to version 2
    task = fedavgm_task
    w0 = version_vector(task.current_version)
    for number in (1, 2):
        agg_tasks.aggregate_round(close_round(task, number, updates(number, w0.size)).pk)
    task.refresh_from_db()
    assert task.current_version.number == 3
    set_current_version(task, 2)
    task.refresh_from_db()
    w_base = version_vector(task.current_version)
    # Round 2 ended when version 3 was made; the next round (3) opened from 3 and would be superseded: fail it
    # the way the service does, so round 4 opens from version 2.
    open_round = Round.objects.get(task=task, status=Round.Status.OPEN)
    rounds.fail(open_round.pk, "rolled back", expected_status=Round.Status.OPEN)
    number = Round.objects.get(task=task, status=Round.Status.OPEN).number
    u = updates(number, w0.size)
    # Execute
    rnd = close_round(task, number, u)
    assert rnd.base_version.number == 2
    agg_tasks.aggregate_round(rnd.pk)
    # Assert: a first step from version 2 (momentum = delta), and the message says why
    rnd.refresh_from_db()
    task.refresh_from_db()
    expected, m = fedavgm(w_base, weighted(u), None, lr=LR, beta=MOMENTUM)
    np.testing.assert_array_equal(version_vector(task.current_version), expected)
    assert rnd.status == Round.Status.CLOSED
    assert rnd.message.endswith("The server optimizer's state was reset: it was computed up to version 3, but "
                                "this round started from version 2 (a rollback, an upload or a round without it).")
    assert "(step 1 of its state)" in rnd.message
    state = ServerOptimizerState.objects.get(task=task)
    assert state.steps == 1 and state.version == task.current_version
    np.testing.assert_array_equal(read_arrays(state.blob)["momentum"], m)


def test_the_state_survives_a_restart_of_the_process(tiny_artifacts, tmp_path):
    """Each round runs in its own ``manage.py shell`` process on one SQLite file and media folder."""
    # Prepare: the tiny model's files, and a migrated database
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps(tiny_artifacts.model_json))
    for name, data in tiny_artifacts.shards.items():
        (model / name).write_bytes(data)
    env = platform_env(tmp_path)
    manage(env, "migrate", "--noinput")
    call = "from tests.aggregation import optimizer_process as p; p.{}"
    manage(env, "shell", "-c", call.format(f"setup({str(model)!r})"))

    # Execute: round 1 in one process, round 2 in another
    def run(number: int) -> dict:
        out = manage(env, "shell", "-c", call.format(f"run_round({number})")).stdout
        return json.loads(out.strip().splitlines()[-1])

    one, two = run(1), run(2)
    # Assert: round 2 continued round 1's momentum, read back from the database and the state file
    w0, w1, w2 = (np.array(v, dtype=np.float32) for v in (one["base"], one["new"], two["new"]))
    np.testing.assert_array_equal(np.array(two["base"], dtype=np.float32), w1)
    u1, u2 = (optimizer_process.updates(n, w0.size) for n in (1, 2))
    lr, beta = optimizer_process.LR, optimizer_process.MOMENTUM
    expected1, m1 = fedavgm(w0, weighted(u1), None, lr=lr, beta=beta)
    expected2, m2 = fedavgm(w1, weighted(u2), m1, lr=lr, beta=beta)
    np.testing.assert_array_equal(w1, expected1)
    np.testing.assert_array_equal(w2, expected2)
    np.testing.assert_array_equal(np.array(two["momentum"], dtype=np.float32), m2)
    assert (one["steps"], two["steps"]) == (1, 2) and two["status"] == "closed"
    # A reset would have made round 2 a first step: momentum = delta only
    assert not np.allclose(m2, weighted(u2) - w1)
