"""Python participants recover by themselves (a real daphne and consumer, embedded, on the selected database).

Two participants train three rounds of a two-participant task; after the first round daphne is
stopped and started again on the same port. Both must reconnect with their resume tokens (backoff,
``disco_client.remote.Recovery``) and finish their rounds. A participant refused with ``stale_round``
syncs to the open round. No fixed sleeps: every wait has a limit.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from disco_client.keras import KerasFederatedClient
from disco_client.remote import Recovery
from tests.integration.test_federated import titanic_like
from tests.live_platform import LivePlatform, daphne, free_port


@pytest.fixture
def embedded_platform(tmp_path):
    platform = LivePlatform(tmp_path, redis_url="", DISCO_TASK_PROVIDERS="tests.integration.fed_tasks.FedTabularPairs")
    try:
        platform.manage("migrate", "--noinput")
        platform.manage("load_default_tasks", "--only", "fed-pairs")
        yield platform.env
    finally:
        platform.stop()


def test_a_stale_update_syncs_the_participant_to_the_open_round(embedded_platform, tmp_path):
    env = embedded_platform
    logs: list[str] = []

    async def stale() -> dict:
        client = KerasFederatedClient(url, "fed-pairs", log=logs.append)
        client.fetch_task()
        welcome = await client.connect()
        model = client.load_keras_model(welcome["currentVersion"])
        try:  # an update for a round that is not open, as from a participant slower than the deadline
            return await client.contribute(client.model_tensors(model), round_number=welcome["round"] - 1,
                                           base_version=welcome["currentVersion"], samples=10)
        finally:
            await client.close()

    # On a thread of its own: an earlier test of the session may have left this thread's event loop set.
    with daphne(env, tmp_path / "daphne.log") as url, ThreadPoolExecutor(max_workers=1) as pool:
        outcome = pool.submit(asyncio.run, stale()).result(timeout=300)
    assert outcome == {"type": "sync", "reason": "stale_round", "round": 0, "version": 1, "nextRound": 1}
    assert any("synced with the server (stale_round)" in line for line in logs), logs


def test_participants_finish_their_rounds_across_a_daphne_restart(embedded_platform, tmp_path):
    env = embedded_platform
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first_round = threading.Event()
    logs: list[str] = []
    # Up to ~28 attempts 0.2 s .. 3 s apart: a bounded minute and a half for daphne to come back.
    recovery = Recovery(initial_delay=0.2, max_delay=3.0, attempts=30)
    clients = [KerasFederatedClient(url, "fed-pairs", log=logs.append, recovery=recovery) for _ in range(2)]
    datasets = [titanic_like(n, seed) for n, seed in ((60, 21), (80, 22))]

    async def train() -> list:
        return await asyncio.gather(*(c.run(x, y, rounds=3, on_round=lambda _: first_round.set())
                                      for c, (x, y) in zip(clients, datasets, strict=True)))

    with ThreadPoolExecutor(max_workers=1) as pool:
        with daphne(env, tmp_path / "daphne-1.log", port=port):
            future = pool.submit(asyncio.run, train())
            assert first_round.wait(timeout=300), "no round closed before the restart"
        with daphne(env, tmp_path / "daphne-2.log", port=port):
            results = future.result(timeout=300)

    assert [len(r) for r in results] == [3, 3]
    assert any("reconnecting" in line for line in logs), logs
    assert any(line.startswith("Reconnected") for line in logs), logs
    for result in results:  # every round ended at a version the server made; none was skipped silently
        assert [r.outcome in ("round_closed", "sync", "round_failed") for r in result] == [True] * 3
    assert results[0][-1].version == results[1][-1].version
