"""Federated learning across real processes: daphne, Redis, a Celery aggregation worker, Python participants."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis

from aggregation.aggregators.bounds import capped_shares
from aggregation.participant import FederatedClient, ParticipantError
from tests.live_platform import daphne, free_port, kill_group, manage, platform_env, worker

pytestmark = pytest.mark.services
REDIS_URL = "redis://127.0.0.1:6379/13"
PROVIDERS = ("tests.integration.fed_tasks.FedTabular,tests.integration.fed_tasks.FedTabularPairs,"
             "tests.integration.fed_tasks.FedTabularPrivate,tests.integration.fed_tasks.FedTabularInvited")


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
    def __init__(self, root: Path):
        self.root = root
        self.env = platform_env(root, REDIS_URL=REDIS_URL, DISCO_TASK_PROVIDERS=PROVIDERS,
                                DISCO_BROKER_VISIBILITY_TIMEOUT="4")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def versions(self, task_id: str) -> list[int]:
        return sorted(v["number"] for v in self.get(f"/api/tasks/{task_id}/versions/"))

    def db(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.root / "db.sqlite3", timeout=30) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    redis.Redis.from_url(REDIS_URL).flushdb()
    p = Platform(tmp_path_factory.mktemp("federated"))
    manage(p.env, "migrate", "--noinput")
    embedded = {**p.env, "REDIS_URL": ""}  # convert the initial models in-process
    manage(embedded, "load_default_tasks", "--only", "fed-tabular", "fed-pairs", "fed-private",
           "fed-invited")
    with daphne(p.env, p.root / "daphne.log", port=p.port), \
            worker(p.env, p.root / "worker.log", queue="aggregation") as proc:
        p.worker = proc
        yield p


async def run_clients(url: str, task_id: str, datasets, rounds: int, tokens=None,
                      part_bytes=None, token: str = "") -> list[FederatedClient]:
    clients = [FederatedClient(url, task_id, log=lambda _: None, resume_token=(tokens or {}).get(i, ""), token=token)
               for i in range(len(datasets))]
    for client, size in zip(clients, part_bytes or [], strict=False):
        client.part_bytes = size
    await asyncio.gather(*(c.run(x, y, rounds=rounds) for c, (x, y) in zip(clients, datasets, strict=True)))
    return clients


def version_vector(platform: Platform, task_id: str, number: int) -> np.ndarray:
    base = f"{platform.url}/tasks/{task_id}/versions/{number}/"
    manifest = json.loads(urllib.request.urlopen(base + "model.json").read())["weightsManifest"]
    data = b"".join(urllib.request.urlopen(base + p).read() for g in manifest for p in g["paths"])
    return np.frombuffer(data, dtype="<f4")


def test_three_participants_three_rounds_end_with_the_same_weights(platform):
    datasets = [titanic_like(n, seed) for n, seed in ((60, 1), (90, 2), (150, 3))]
    # The first two send their updates announced and in parts (of 64 and 100 bytes), the third whole.
    clients = run_async(run_clients(platform.url, "fed-tabular", datasets, rounds=3, part_bytes=[64, 100]))
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
    maps = Path(f"/proc/{platform.worker.pid}/maps").read_text()
    assert "tensorflow" not in maps  # the aggregation worker never loads TensorFlow
    assert list((platform.root / "media" / ".incoming").iterdir()) == []  # no spooled part left behind


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


async def _straggler_round(url: str) -> float:
    """Two participants contribute, a third stays connected but silent: the deadline closes the round."""
    active = [FederatedClient(url, "fed-pairs", log=lambda _: None) for _ in range(2)]
    silent = FederatedClient(url, "fed-pairs", log=lambda _: None)
    welcomes = [await c.connect() for c in (*active, silent)]
    for c in active:
        c.load_keras_model(welcomes[0]["currentVersion"])
    start = time.monotonic()
    for c, w in zip(active, welcomes, strict=False):
        model = c.load_keras_model(w["currentVersion"])
        await c.send_update(model, round_number=w["round"], base_version=w["currentVersion"], samples=10)
    closed = await active[0].next_event("round_closed", timeout=30)
    elapsed = time.monotonic() - start
    assert closed["contributors"] == 2
    for c in (*active, silent):
        await c.close()
    return elapsed


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
    log = (platform.root / "daphne.log").read_text()
    assert "/ws/federated/fed-invited/" in log and secret not in log and "resume=" not in log


def test_a_silent_participant_does_not_stall_the_round_past_its_deadline(platform):
    elapsed = run_async(_straggler_round(platform.url))
    assert elapsed < 5 + 10  # deadline 5 s, plus scheduling slack


def test_restarting_daphne_loses_no_committed_version(platform, tmp_path):
    datasets = [titanic_like(40, seed) for seed in (7, 8, 9)]
    clients = run_async(run_clients(platform.url, "fed-tabular", datasets, rounds=1))
    committed = platform.versions("fed-tabular")
    # Stop the module's daphne and serve the same database again on the same port.
    with daphne(platform.env, tmp_path / "daphne2.log", port=free_port()) as url:
        restarted = Platform(platform.root)
        restarted.url = url
        assert restarted.versions("fed-tabular") == committed
        tokens = {i: c.resume_token for i, c in enumerate(clients)}
        run_async(run_clients(url, "fed-tabular", datasets, rounds=1, tokens=tokens))
        assert restarted.versions("fed-tabular") == [*committed, committed[-1] + 1]


def test_simulate_prints_each_round_and_a_summary(platform, tmp_path):
    from tasks.sample_data import titanic_like_csv

    data = tmp_path / "passengers.csv"
    data.write_text(titanic_like_csv(240, seed=11))
    before = platform.versions("fed-tabular")[-1]
    result = manage(platform.env, "simulate", "--task", "fed-tabular", "--participants", "3", "--rounds", "2",
                    "--server", platform.url, "--data", str(data), "--non-iid", timeout=300)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("Simulating 3 federated participants on fed-tabular (240 samples, non-IID) for 2 rounds")
    assert lines[1].startswith(f"round {before}: version {before + 1}, global loss ")
    assert lines[2].startswith(f"round {before + 1}: version {before + 2}, global loss ")
    assert lines[-1].startswith(f"summary: 3 participants x 2 rounds on fed-tabular: final version {before + 2}")


def test_a_killed_worker_yields_exactly_one_next_version(platform):
    """Runs last in this module: it replaces the module's aggregation worker."""
    before = platform.versions("fed-pairs")
    platform.worker.terminate()  # no worker: the closed round's aggregation waits in Redis
    platform.worker.wait(timeout=30)

    async def contribute() -> None:
        clients = [FederatedClient(platform.url, "fed-pairs", log=lambda _: None) for _ in range(2)]
        welcomes = [await c.connect() for c in clients]
        for c, w in zip(clients, welcomes, strict=True):
            model = c.load_keras_model(w["currentVersion"])
            await c.send_update(model, round_number=w["round"], base_version=w["currentVersion"], samples=5)
        for c in clients:
            await c.close()

    run_async(contribute())
    # Hold the database's write lock so the next worker blocks inside aggregate_round; kill it there.
    lock = sqlite3.connect(platform.root / "db.sqlite3", timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    first_log = platform.root / "worker-killed.log"
    with worker(platform.env, first_log, queue="aggregation", pool="prefork") as doomed:
        deadline = time.monotonic() + 60
        while "aggregation.tasks.aggregate_round[" not in first_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "aggregation.tasks.aggregate_round[" in first_log.read_text()
        time.sleep(1.5)  # it reads the updates, then waits for the lock
        kill_group(doomed)
    lock.execute("ROLLBACK")
    lock.close()
    assert platform.versions("fed-pairs") == before  # the killed worker committed nothing
    # A worker starting puts tasks left unacknowledged for longer than the visibility timeout (4 s
    # here) back on the queue: start it once that much time has passed, as a restart would.
    time.sleep(5)
    with worker(platform.env, platform.root / "worker-again.log", queue="aggregation", pool="prefork"):
        deadline = time.monotonic() + 90
        while platform.versions("fed-pairs") == before and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # a duplicate delivery, if any, would land now
        assert platform.versions("fed-pairs") == [*before, before[-1] + 1]
