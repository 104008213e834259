"""Decentralized rounds across real processes: daphne with the Redis channel layer, Python peers over the relay."""

from __future__ import annotations

import asyncio
import time
import urllib.parse

import numpy as np
import pytest

from disco_client import secure
from disco_client.codec import encode_weights
from disco_client.keras import KerasDecentralizedClient
from disco_client.peer import weighted_mean
from tests.conftest import snapshot
from tests.integration.test_federated import check_evaluations, run_async, titanic_like, version_vector
from tests.live_platform import LivePlatform, services_redis_url, wait_for_async

pytestmark = pytest.mark.services
PROVIDERS = ("tests.integration.peer_tasks.PeerTabular,tests.integration.peer_tasks.PeerSecure,"
             "tests.integration.peer_tasks.PeerPrivate")


class Platform(LivePlatform):
    """daphne and an aggregation worker (whose sweeper enforces the peers' deadlines) on the selected database and
    the environment's Redis (its database 10: this platform lives for the module)."""

    url = ""

    def stored_bytes(self) -> bytes:
        """Everything the platform keeps: the database's rows, the server's logs and every file under MEDIA_ROOT."""
        files = [*self.root.glob("*.log"), *(p for p in (self.root / "media").rglob("*") if p.is_file())]
        return self.db.raw_contents() + b"".join(p.read_bytes() for p in files)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    server = urllib.parse.urlsplit(services_redis_url())
    p = Platform(tmp_path_factory.mktemp("decentralized"), redis_url=server._replace(path="/10").geturl(),
                 DISCO_TASK_PROVIDERS=PROVIDERS)
    try:
        p.manage("migrate", "--noinput")
        p.manage("load_default_tasks", "--only", "peer-mean", "peer-secure", "peer-private", REDIS_URL="")
        p.worker("aggregation")
        p.url = p.daphne().url
        yield p
    finally:
        p.stop()


async def run_peers(url: str, task_id: str, datasets, rounds: int) -> tuple[list[KerasDecentralizedClient], list]:
    clients = [KerasDecentralizedClient(url, task_id, log=lambda _: None) for _ in datasets]
    results = await asyncio.gather(*(c.run(x, y, rounds=rounds) for c, (x, y) in zip(clients, datasets, strict=True)))
    return clients, results


def final_vectors(clients: list[KerasDecentralizedClient]) -> list[np.ndarray]:
    return [c.model_vector(c.model) for c in clients]


def test_three_peers_three_rounds_of_mean_end_with_identical_weights(platform):
    before = snapshot(platform.root / "media")
    datasets = [titanic_like(n, seed) for n, seed in ((60, 1), (90, 2), (150, 3))]
    clients, results = run_async(run_peers(platform.url, "peer-mean", datasets, rounds=3))
    ids = sorted(c.participant_id for c in clients)
    for per_client in results:
        assert [r.round for r in per_client] == [1, 2, 3]
        assert all(r.peers == ids and r.fell_back is None and r.used == "relay" for r in per_client)
    finals = final_vectors(clients)
    assert all(np.array_equal(finals[0], f) for f in finals[1:])  # the same bits on every peer
    # Each peer trains on its data less the validation split it holds out (validationSplit 0.2).
    expected = weighted_mean({c.participant_id: (c.last_update, r[-1].samples) for c, r in zip(clients, results,
                                                                                               strict=True)})
    assert [r[-1].samples for r in results] == [48, 72, 120]
    np.testing.assert_array_equal(finals[0], expected)
    by_hand = sum(np.float64(n) * c.last_update.astype(np.float64) for c, n in zip(clients, (60, 90, 150),
                                                                                   strict=True)) / 300
    np.testing.assert_allclose(finals[0], by_hand, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(clients[0].last_update, clients[1].last_update)  # they did train differently
    # The server kept no weights: no new file under MEDIA_ROOT, and no update's bytes in the database or media.
    assert snapshot(platform.root / "media") == before
    stored = platform.stored_bytes()
    for c in clients:
        assert c.last_update[:32].tobytes() not in stored
    assert finals[0][:32].tobytes() not in stored
    for client, per_client in zip(clients, results, strict=True):
        client.results = per_client
    check_evaluations(platform.db.query, "peer-mean", clients, [60, 90, 150], table="aggregation_peerround")


def test_three_peers_three_rounds_of_secure_aggregation_equal_the_plain_mean(platform):
    datasets = [titanic_like(n, seed) for n, seed in ((50, 4), (70, 5), (80, 6))]
    clients, results = run_async(run_peers(platform.url, "peer-secure", datasets, rounds=3))
    assert all(r.fell_back is None and len(r.peers) == 3 for per_client in results for r in per_client)
    finals = final_vectors(clients)
    assert all(np.array_equal(finals[0], f) for f in finals[1:])
    clipped = [np.clip(c.last_update.astype(np.float64), -10.0, 10.0) for c in clients]
    plain = sum(clipped) / 3
    scale = secure.fixed_point_scale(10.0, 3)
    bound = secure.quantization_bound(scale) + np.abs(plain).max() * 2 ** -23  # + the final float32 rounding
    assert np.abs(finals[0] - plain).max() <= bound
    stored = platform.stored_bytes()
    assert all(c.last_update[:32].tobytes() not in stored for c in clients)


def test_python_peers_clip_their_round_change_on_a_private_task(platform):
    from tests.integration.peer_tasks import PeerPrivate

    start = version_vector(platform, "peer-private", 1)
    datasets = [titanic_like(n, seed) for n, seed in ((80, 13), (120, 14))]
    clients, _ = run_async(run_peers(platform.url, "peer-private", datasets, rounds=1))
    radius = PeerPrivate.clipping_radius
    for client in clients:
        change = np.linalg.norm(client.last_update.astype(np.float64) - start)
        assert radius * 0.99 < change <= radius * (1 + 1e-5), change  # trained further, then clipped to C
    final = final_vectors(clients)[0]
    assert np.linalg.norm(final.astype(np.float64) - start) <= radius * (1 + 1e-5)


async def _dropout_round(url: str, task_id: str) -> list:
    """Two peers train and exchange; a third says ready, gets the peer list, then closes its connection."""
    datasets = [titanic_like(40, seed) for seed in (7, 8)]
    quitter = KerasDecentralizedClient(url, task_id, log=lambda _: None)
    welcome = await quitter.connect()
    deadline_seconds = welcome["deadlineSeconds"]

    async def quit_mid_round() -> None:
        await quitter.announce_ready(welcome["round"])
        await quitter._wait_for(lambda: welcome["round"] in quitter._peers, time.monotonic() + 120)
        await quitter.close()

    clients = [KerasDecentralizedClient(url, task_id, log=lambda _: None) for _ in datasets]
    # Training, the ready quorum and the exchange, never a hang: a time limit, not a measured duration.
    _, *results = await asyncio.wait_for(asyncio.gather(quit_mid_round(), *(
        c.run(x, y, rounds=1) for c, (x, y) in zip(clients, datasets, strict=True))), 2 * deadline_seconds + 60)
    return [r[0] for r in results]


def test_a_peer_leaving_mid_round_under_mean_leaves_the_mean_of_the_others(platform):
    results = run_async(_dropout_round(platform.url, "peer-mean"))
    assert all(len(r.peers) == 3 for r in results)  # the quitter was one of the round's peers
    assert all("1 peer(s) sent nothing" in r.fell_back for r in results)


async def _partial_sender_round(url: str) -> tuple[list[KerasDecentralizedClient], list]:
    """A third peer sends its update to one of the two others only, then leaves."""
    datasets = [titanic_like(n, seed) for n, seed in ((40, 21), (60, 22))]
    quitter = KerasDecentralizedClient(url, "peer-mean", log=lambda _: None)
    welcome = await quitter.connect()
    model = quitter.load_keras_model(welcome["currentVersion"])
    number = welcome["round"]

    async def send_to_one_then_leave() -> None:
        await quitter.announce_ready(number)
        await quitter._wait_for(lambda: number in quitter._peers, time.monotonic() + 120)
        first = min(p for p in quitter._peers[number]["peers"] if p != quitter.participant_id)
        frame = encode_weights({"type": "peer_update", "round": number, "samples": 50}, quitter.model_tensors(model))
        await quitter.send_relay(first, number, "update", frame)
        recipient = next(c for c in clients if c.participant_id == first)
        await wait_for_async(lambda: (number, "update", quitter.participant_id) in recipient._inbox, timeout=60,
                             what="the relayed update to reach its one recipient")  # the other still waits for it
        await quitter.close()

    clients = [KerasDecentralizedClient(url, "peer-mean", log=lambda _: None) for _ in datasets]
    runs = [c.run(x, y, rounds=1) for c, (x, y) in zip(clients, datasets, strict=True)]
    _, *results = await asyncio.gather(send_to_one_then_leave(), *runs)
    return clients, [r[0] for r in results]


def test_an_update_only_some_peers_received_is_left_out_by_all(platform):
    clients, results = run_async(_partial_sender_round(platform.url))
    finals = final_vectors(clients)
    np.testing.assert_array_equal(finals[0], finals[1])  # without the agreement step, one had three updates
    expected = weighted_mean({c.participant_id: (c.last_update, n) for c, n in zip(clients, (40, 60), strict=True)})
    np.testing.assert_array_equal(finals[0], expected)
    assert all(r.contributors == sorted(c.participant_id for c in clients) for r in results)
    assert any("left out: not every peer received them" in (r.fell_back or "") for r in results), results


def test_a_peer_leaving_mid_round_under_secure_aggregation_falls_back_visibly(platform):
    results = run_async(_dropout_round(platform.url, "peer-secure"))
    assert all("kept the local weights" in r.fell_back for r in results)


def test_simulate_covers_the_decentralized_scheme(platform, tmp_path):
    from tasks.sample_data import titanic_like_csv
    data = tmp_path / "passengers.csv"
    data.write_text(titanic_like_csv(180, seed=12))
    result = platform.manage("simulate", "--task", "peer-secure", "--participants", "3", "--rounds", "2",
                    "--server", platform.url, "--data", str(data), timeout=300)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("Simulating 3 decentralized participants on peer-secure (180 samples, iid)")
    assert "3 peers over the relay" in lines[1] and "3 peers over the relay" in lines[2]
    assert lines[-1].startswith("summary: 3 participants x 2 rounds on peer-secure: 3 peers in the last round")
