"""Federated learning across real processes: daphne, Redis, a Celery aggregation worker, Python participants."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from aggregation.aggregators.bounds import capped_shares
from disco_client.keras import KerasFederatedClient
from disco_client.remote import ParticipantError
from tests.live_platform import LivePlatform, manage, pending_tasks, unacked_ages, wait_for

pytestmark = pytest.mark.services
VISIBILITY_TIMEOUT = 4  # seconds before a task a dead worker took is delivered again
PROVIDERS = ("tests.integration.fed_tasks.FedTabular,tests.integration.fed_tasks.FedTabularPairs,"
             "tests.integration.fed_tasks.FedTabularPrivate,tests.integration.fed_tasks.FedTabularInvited,"
             "tests.integration.fed_tasks.FedTabularExact,tests.integration.fed_tasks.FedTabularInt8,"
             "tests.integration.fed_tasks.FedTabularSampled,tests.integration.fed_tasks.FedTabularNumpy")


def run_async(coroutine):
    """asyncio.run on a thread of its own: a session's Playwright may own this thread's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def titanic_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] - x[:, 3] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y


class Platform:
    """The platform on the environment's database (a fresh one) and Redis: one daphne, one aggregation worker."""

    def __init__(self, root: Path):
        self.root = root
        # Every update is announced and waits for its upload slot, one at a time (aggregation.upload_slots): the
        # Python participants here send them all that way.
        self.live = LivePlatform(root, DISCO_TASK_PROVIDERS=PROVIDERS,
                                 DISCO_BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
                                 DISCO_ANNOUNCE_FROM_BYTES="64", DISCO_UPLOAD_SLOTS="1")
        self.env = self.live.env

    @property
    def url(self) -> str:
        return self.daphne.url

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def versions(self, task_id: str) -> list[int]:
        return sorted(v["number"] for v in self.get(f"/api/tasks/{task_id}/versions/"))

    def db(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.live.db.query(sql, params)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("federated"))
    try:
        manage(p.env, "migrate", "--noinput")
        embedded = {**p.env, "REDIS_URL": ""}  # convert the initial models in-process
        manage(embedded, "load_default_tasks", "--only", "fed-tabular", "fed-pairs", "fed-private",
               "fed-invited", "fed-exact", "fed-int8", "fed-sampled", "fed-numpy")
        p.daphne = p.live.daphne()
        p.worker = p.live.worker("aggregation", pool="solo")
        yield p
    finally:
        p.live.stop()


async def run_clients(url: str, task_id: str, datasets, rounds: int, tokens=None,
                      part_bytes=None, token: str = "") -> list[KerasFederatedClient]:
    clients = [KerasFederatedClient(url, task_id, log=lambda _: None, resume_token=(tokens or {}).get(i, ""),
                                    token=token)
               for i in range(len(datasets))]
    for client, size in zip(clients, part_bytes or [], strict=False):
        client.part_bytes = size
    results = await asyncio.gather(*(c.run(x, y, rounds=rounds) for c, (x, y) in zip(clients, datasets,
                                                                                      strict=True)))
    for client, per_round in zip(clients, results, strict=True):
        client.results = per_round  # each round's RoundResult, its validation scores included
    return clients


def version_vector(platform: Platform, task_id: str, number: int) -> np.ndarray:
    base = f"{platform.url}/tasks/{task_id}/versions/{number}/"
    manifest = json.loads(urllib.request.urlopen(base + "model.json").read())["weightsManifest"]
    data = b"".join(urllib.request.urlopen(base + p).read() for g in manifest for p in g["paths"])
    return np.frombuffer(data, dtype="<f4")


def test_three_participants_three_rounds_end_with_the_same_weights(platform):
    datasets = [titanic_like(n, seed) for n, seed in ((60, 1), (90, 2), (150, 3))]
    # The first two send their updates in parts (of 64 and 100 bytes), the third in one; all three announce them
    # and send when their turn comes, the platform granting one upload at a time (DISCO_UPLOAD_SLOTS=1).
    clients = run_async(run_clients(platform.url, "fed-tabular", datasets, rounds=3, part_bytes=[64, 100]))
    assert [c.announce_from for c in clients] == [64, 64, 64]  # the welcome's announceFrom
    assert len(clients[0].last_update) * 4 > 2 * 100  # the weights alone take several parts
    assert platform.versions("fed-tabular") == [1, 2, 3, 4]
    final = version_vector(platform, "fed-tabular", 4)
    # The last round's aggregate, computed here from what each participant sent: the sample-weighted mean with
    # no update over the task's maxContributionShare (0.25 < 1/3, so here the plain mean).
    weights = capped_shares(np.array([60, 90, 150], dtype=np.float64), 0.25)
    np.testing.assert_allclose(weights, [1 / 3] * 3)
    expected = sum(np.float32(w) * c.last_update for w, c in zip(weights, clients, strict=True))
    np.testing.assert_allclose(final, expected, rtol=1e-5, atol=1e-6)
    assert platform.get("/api/tasks/fed-tabular/")["currentVersion"] == 4
    rounds = platform.db("SELECT number, status FROM aggregation_round r JOIN tasks_task t ON r.task_id = t.id "
                         "WHERE t.id = 'fed-tabular' ORDER BY number")
    assert rounds == [(1, "closed"), (2, "closed"), (3, "closed"), (4, "open")]
    check_evaluations(platform.db, "fed-tabular", clients, [60, 90, 150])
    maps = Path(f"/proc/{platform.worker.proc.pid}/maps").read_text()
    assert "tensorflow" not in maps  # the aggregation worker never loads TensorFlow
    assert list((platform.root / "media" / ".incoming").iterdir()) == []  # no spooled part left behind


NUMPY_PARTICIPANTS = """
import asyncio, json, sys
import numpy as np
from disco_client import DenseTrainer, FederatedClient

def titanic_like(n, seed):  # as in test_federated, which this process does not import (it imports the server)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] - x[:, 3] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)

async def main(url):
    trainers = [DenseTrainer(*titanic_like(n, seed), validation=titanic_like(20, seed + 10), rate=0.3)
                for n, seed in ((40, 1), (80, 2))]
    clients = [FederatedClient(url, "fed-numpy", log=lambda _: None) for _ in trainers]
    results = await asyncio.gather(*(c.run(t, rounds=3) for c, t in zip(clients, trainers)))
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "django", "aggregation",
                                                                   "tasks", "disco_site"))
    print(json.dumps({"loaded": loaded, "last": [c.last_update.tolist() for c in clients],
                      "rounds": [[(r.round, r.version, r.outcome, r.reported, r.val_samples) for r in rs]
                                 for rs in results],
                      "weights": [np.concatenate([w.ravel() for w in t.get_weights()]).tolist() for t in trainers]}))

asyncio.run(main(sys.argv[1]))
"""


def test_numpy_participants_without_tensorflow_train_the_task_with_the_server(platform):
    """The client's protocol layer with a numpy trainer: joins, trains, sends, reports evaluations, and ends on
    the server's versions, without TensorFlow (nor anything of the server) in its process."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", NUMPY_PARTICIPANTS, platform.url], capture_output=True, text=True,
                          timeout=240, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert platform.versions("fed-numpy") == [1, 2, 3, 4]
    for rounds in report["rounds"]:
        assert [r[:3] for r in rounds] == [[1, 2, "round_closed"], [2, 3, "round_closed"], [3, 4, "round_closed"]]
        assert all(r[3] and r[4] == 20 for r in rounds)  # each round's result scored and reported
    final = version_vector(platform, "fed-numpy", 4)
    weights = capped_shares(np.array([40, 80], dtype=np.float64), 0.25)  # each at most a share: the plain mean
    expected = sum(np.float32(w) * np.float32(last) for w, last in zip(weights, report["last"], strict=True))
    np.testing.assert_allclose(final, expected, rtol=1e-5, atol=1e-6)
    for weights in report["weights"]:  # both continue from the last version
        np.testing.assert_array_equal(np.float32(weights), final)


def check_evaluations(query, task_id: str, clients, sizes: list[int], table: str = "aggregation_round") -> None:
    """Every finished round holds the sample-weighted mean of what each participant scored on its validation split
    (the task's validationSplit, 0.2, of its data: held out of training) and reported."""
    held = [round(0.2 * n) for n in sizes]
    rows = query(f"SELECT number, val_loss, val_accuracy, val_samples FROM {table} WHERE task_id = %s "
                       "AND val_samples IS NOT NULL ORDER BY number", (task_id,))
    reported = {}
    for client, n in zip(clients, held, strict=True):
        for result in client.results:
            assert result.samples == round(n / 0.2) - n  # trained on the rest
            if getattr(result, "outcome", "round_closed") == "round_closed":  # a sync has no result to score
                assert result.reported and result.val_samples == n
                reported.setdefault(result.round, []).append(result)
    assert [r[0] for r in rows] == sorted(reported) and len(rows) >= 2
    for number, loss, accuracy, samples in rows:
        mine = reported[number]
        assert samples == sum(held) == sum(r.val_samples for r in mine)
        assert np.isclose(loss, sum(r.val_loss * r.val_samples for r in mine) / samples)
        assert np.isclose(accuracy, sum(r.val_accuracy * r.val_samples for r in mine) / samples)


def mlp_accuracy(vector: np.ndarray, x: np.ndarray, y: np.ndarray, hidden: int = 8) -> float:
    """Accuracy of the fed tasks' 5 -> hidden (relu) -> 1 (sigmoid) network with the flat weights ``vector``."""
    sizes = [5 * hidden, hidden, hidden, 1]
    w1, b1, w2, b2 = np.split(vector.astype(np.float64), np.cumsum(sizes)[:-1])
    h = np.maximum(x @ w1.reshape(5, hidden) + b1, 0)
    return float(np.mean(((h @ w2.reshape(hidden, 1) + b2)[:, 0] > 0) == (y > 0.5)))


def test_int8_rounds_reach_the_accuracy_of_exact_rounds_with_a_quarter_of_the_bytes(platform):
    datasets = [titanic_like(n, seed) for n, seed in ((120, 41), (150, 42), (180, 43))]
    held_out = titanic_like(2000, 44)
    accuracy, nbytes = {}, {}
    for task_id in ("fed-exact", "fed-int8"):
        clients = run_async(run_clients(platform.url, task_id, datasets, rounds=4))
        assert {c.compression for c in clients} == {"int8" if task_id == "fed-int8" else "float32"}
        accuracy[task_id] = mlp_accuracy(version_vector(platform, task_id, 5), *held_out)
        nbytes[task_id] = platform.db("SELECT sum(c.nbytes) FROM aggregation_contribution c JOIN aggregation_round r "
                                      "ON c.round_id = r.id WHERE r.task_id = %s", (task_id,))[0][0]
    # Same data, same start, same seeds: int8 updates (a scale per tensor, 1/127 of its largest value per step)
    # end within 3 points of exact ones on 2,000 held-out rows (four short rounds: both learn, from 0.5).
    assert accuracy["fed-exact"] > 0.6, accuracy
    assert abs(accuracy["fed-int8"] - accuracy["fed-exact"]) <= 0.03, accuracy
    # Stored contributions are what arrived: a 57-parameter frame is mostly header, so int8's saving shows less
    # than 4x here; it must still be smaller per update (the codec's own tests check the payload sizes).
    assert nbytes["fed-int8"] < nbytes["fed-exact"], nbytes


def test_python_participants_clip_their_round_change_on_a_private_task(platform):
    from tests.integration.fed_tasks import FedTabularPrivate

    start = version_vector(platform, "fed-private", 1)
    datasets = [titanic_like(n, seed) for n, seed in ((80, 11), (120, 12))]
    clients = run_async(run_clients(platform.url, "fed-private", datasets, rounds=1))
    radius = FedTabularPrivate.clipping_radius
    for client in clients:
        change = np.linalg.norm(client.last_update.astype(np.float64) - start)
        assert radius * 0.99 < change <= radius * (1 + 1e-5), change  # trained further, then clipped to C
    new = version_vector(platform, "fed-private", 2)
    assert np.linalg.norm(new.astype(np.float64) - start) <= radius * (1 + 1e-5)  # a mean of clipped changes


async def _straggler_round(url: str) -> dict:
    """Two participants contribute, a third stays connected but silent: the deadline closes the round."""
    active = [KerasFederatedClient(url, "fed-pairs", log=lambda _: None) for _ in range(2)]
    silent = KerasFederatedClient(url, "fed-pairs", log=lambda _: None)
    welcomes = [await c.connect() for c in (*active, silent)]
    for c in active:
        c.load_keras_model(welcomes[0]["currentVersion"])
    for c, w in zip(active, welcomes, strict=False):
        model = c.load_keras_model(w["currentVersion"])
        await c.send_update(c.model_tensors(model), round_number=w["round"], base_version=w["currentVersion"],
                            samples=10)
    closed = await active[0].next_event("round_closed", timeout=60)
    for c in (*active, silent):
        await c.close()
    return closed


def test_python_participants_join_an_invited_task_with_the_secret_in_a_header(platform):
    (secret,) = platform.db("SELECT invitation_secret FROM tasks_task WHERE id = 'fed-invited'")[0]
    assert secret
    with pytest.raises(urllib.error.HTTPError) as refused:
        platform.get("/tasks/fed-invited/model.json")
    assert refused.value.code == 403 and "invitation" in json.loads(refused.value.read())["detail"]
    with pytest.raises(ParticipantError, match="invitation"):
        run_async(run_clients(platform.url, "fed-invited", [titanic_like(20, 1)], rounds=1))
    before = platform.versions("fed-invited")
    datasets = [titanic_like(40, seed) for seed in (3, 4)]
    run_async(run_clients(platform.url, "fed-invited", datasets, rounds=1, token=secret))
    assert platform.versions("fed-invited") == [*before, before[-1] + 1]
    # The secret went in headers only: daphne's access log never shows it (nor a resume token).
    log = platform.daphne.log_text()
    assert "/ws/federated/fed-invited/" in log and secret not in log and "resume=" not in log


def test_a_silent_participant_does_not_stall_the_round_past_its_deadline(platform):
    closed = run_async(_straggler_round(platform.url))
    assert closed["contributors"] == 2  # the third was still connected: only the deadline could close the round
    ((deadline, closed_at),) = platform.db("SELECT r.deadline, r.closed_at FROM aggregation_round r WHERE "
                                           "r.task_id = 'fed-pairs' AND r.number = %s", (closed["round"],))
    assert closed_at >= deadline


def test_restarting_daphne_loses_no_committed_version(platform):
    datasets = [titanic_like(40, seed) for seed in (7, 8, 9)]
    clients = run_async(run_clients(platform.url, "fed-tabular", datasets, rounds=1))
    committed = platform.versions("fed-tabular")
    # Stop the module's daphne and serve the same database again on the same port.
    port = platform.daphne.port
    platform.daphne.restart()
    assert platform.daphne.port == port
    assert platform.versions("fed-tabular") == committed
    tokens = {i: c.resume_token for i, c in enumerate(clients)}
    resumed = run_async(run_clients(platform.url, "fed-tabular", datasets, rounds=1, tokens=tokens))
    assert [c.resume_token for c in resumed] == [c.resume_token for c in clients]
    assert platform.versions("fed-tabular") == [*committed, committed[-1] + 1]


def test_simulate_prints_each_round_and_a_summary(platform, tmp_path):
    from tasks.sample_data import titanic_like_csv

    data = tmp_path / "passengers.csv"
    data.write_text(titanic_like_csv(240, seed=11))
    before = platform.versions("fed-tabular")[-1]
    result = manage(platform.env, "simulate", "--task", "fed-tabular", "--participants", "3", "--rounds", "2",
                    "--server", platform.url, "--data", str(data), "--non-iid", timeout=300)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("Simulating 3 federated participants on fed-tabular (240 samples, shards:1) for 2 "
                               "rounds")
    assert lines[1].startswith(f"round {before}: version {before + 1}, global loss ")
    assert lines[2].startswith(f"round {before + 1}: version {before + 2}, global loss ")
    assert lines[-1].startswith(f"summary: 3 participants x 2 rounds on fed-tabular: final version {before + 2}")


def test_a_killed_worker_yields_exactly_one_next_version(platform):
    """Runs last in this module: it replaces the module's aggregation worker."""
    before = platform.versions("fed-pairs")
    platform.worker.stop()  # no worker: the closed round's aggregation waits in Redis

    async def contribute() -> None:
        clients = [KerasFederatedClient(platform.url, "fed-pairs", log=lambda _: None) for _ in range(2)]
        welcomes = [await c.connect() for c in clients]
        for c, w in zip(clients, welcomes, strict=True):
            model = c.load_keras_model(w["currentVersion"])
            await c.send_update(c.model_tensors(model), round_number=w["round"], base_version=w["currentVersion"],
                                samples=5)
        for c in clients:
            await c.close()

    run_async(contribute())
    # Hold back new versions (PostgreSQL: writes to the versions table; SQLite: every write) so the next worker
    # stops inside aggregate_round, and kill it there.
    db = platform.live.db
    with db.lock_writes("tasks_modelversion"):
        doomed = platform.live.worker("aggregation", pool="prefork")
        inserting = 'INSERT INTO "tasks_modelversion"%'  # the worker's statement
        wait_for(lambda: db.waiting_for_locks(inserting) if db.postgres else "aggregated 2 " in doomed.log_text(),
                 timeout=60, what="the worker to reach the versions inside aggregate_round")
        doomed.kill()
    assert platform.versions("fed-pairs") == before  # the killed worker committed nothing
    # A worker starting puts tasks left unacknowledged for longer than the visibility timeout back on the queue:
    # start it once the dead worker's are that old, as a restart would.
    wait_for(lambda: all(age > VISIBILITY_TIMEOUT for age in unacked_ages(platform.live.redis_url)),
             timeout=VISIBILITY_TIMEOUT + 30, what="the visibility timeout to pass")
    platform.live.worker("aggregation", pool="prefork")
    wait_for(lambda: platform.versions("fed-pairs") != before, timeout=90, what="the round's version")
    # No delivery of the aggregation is left that could make a second version.
    wait_for(lambda: "aggregation.tasks.aggregate_round" not in pending_tasks(platform.live.redis_url),
             timeout=30, what="the re-delivered aggregation to be acknowledged")
    assert platform.versions("fed-pairs") == [*before, before[-1] + 1]


def test_four_participants_two_invited_per_round_each_round_takes_exactly_two_updates(platform):
    datasets = [titanic_like(60, seed) for seed in (51, 52, 53, 54)]
    clients = [KerasFederatedClient(platform.url, "fed-sampled", log=lambda _: None) for _ in datasets]

    async def run_all():
        return await asyncio.gather(*(c.run(x, y, rounds=3) for c, (x, y) in zip(clients, datasets, strict=True)))

    results = run_async(run_all())
    rows = platform.db("SELECT r.number, r.status, r.contributors, r.invited FROM aggregation_round r "
                       "WHERE r.task_id = 'fed-sampled' ORDER BY r.number")
    finished = [row for row in rows if row[1] != "open"]
    assert [(number, status, n) for number, status, n, _ in finished] == [
        (1, "closed", 2), (2, "closed", 2), (3, "closed", 2)], rows
    invited = [set(json.loads(ids) if isinstance(ids, str) else ids) for _, _, _, ids in finished]
    assert all(len(ids) == 2 for ids in invited)
    assert not invited[0] & invited[1]  # round 2 invites the two who waited through round 1
    assert set().union(*invited) == {c.participant_id for c in clients}
    # Every participant trained each round; those not invited sent nothing and carried on from the new version.
    assert all(len(per_client) == 3 for per_client in results)
    assert [sum(r.contributed for per_client in results for r in per_client if r.round == n) for n in (1, 2, 3)] \
        == [2, 2, 2]
    assert {r.version for per_client in results for r in per_client if r.round == 3} == {4}
    assert platform.versions("fed-sampled") == [1, 2, 3, 4]
