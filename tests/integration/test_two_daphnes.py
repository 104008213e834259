"""Two daphne processes serving one task: the Redis channel layer carries a round's end, peer signalling and the
relay from one process to the other; and the same two behind the repository's nginx example (deploy/nginx.conf).

Needs Redis (both daphnes must share a channel layer): the one ``REDIS_URL`` names, else the local Redis server
``make test`` needs anyway; database 1 of it (flushed at the start). Runs on the database the environment selects.
"""

from __future__ import annotations

import asyncio
import getpass
import http.client
import json
import os
import re
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from disco_client.keras import KerasDecentralizedClient, KerasFederatedClient
from tests.integration.test_federated import run_async, titanic_like
from tests.live_platform import ROOT, LivePlatform, Process, free_port, wait_for

pytestmark = pytest.mark.services
PROVIDERS = ("tests.integration.fed_tasks.FedTabular,tests.integration.fed_tasks.FedTabularFour,"
             "tests.integration.peer_tasks.PeerTabular")
SERVICES_REDIS_URL = "redis://127.0.0.1:6379/1"
SPOOFED = "203.0.113.9"  # an address a client claims in its own X-Forwarded-For


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-daphnes")
    extra = {"DISCO_TASK_PROVIDERS": PROVIDERS, "STATIC_ROOT": str(root / "static")}
    # Two daphnes share a task only through the Redis channel layer: without REDIS_URL (the embedded pass), the
    # Redis server `make test` needs anyway (README), on a database of this module's own.
    live = (LivePlatform.selected(root, redis_db=1, **extra) if os.environ.get("REDIS_URL")
            else LivePlatform(root, redis_url=SERVICES_REDIS_URL, **extra))
    try:
        live.manage("migrate", "--noinput")
        live.manage("load_default_tasks", "--only", "fed-tabular", "fed-four", "peer-mean", REDIS_URL="")
        live.manage("collectstatic", "--noinput", "--link", "-v0")
        live.worker("aggregation")
        # As behind a proxy: with --proxy-headers, a connection without X-Forwarded-For counts its socket's address.
        live.daphnes = [live.daphne(proxy_headers=True), live.daphne(proxy_headers=True)]
        yield live
    finally:
        live.stop()


@dataclass
class CountingClient(KerasFederatedClient):
    """A federated participant that notes every ``round_closed`` the server sends it (duplicates included) and
    may claim an address of its own in X-Forwarded-For."""

    closed_rounds: list[int] | None = None
    forwarded_for: str = ""

    def _headers(self) -> dict[str, str]:
        return {**super()._headers(), **({"X-Forwarded-For": self.forwarded_for} if self.forwarded_for else {})}

    async def _pump(self, ws, events: asyncio.Queue) -> None:
        import websockets

        if self.closed_rounds is None:
            self.closed_rounds = []
        try:
            async for raw in ws:
                event = {"type": "binary", "data": raw} if isinstance(raw, bytes) else json.loads(raw)
                if event["type"] == "round_closed":
                    self.closed_rounds.append(event["round"])
                await events.put(event)
        except websockets.ConnectionClosed:
            pass
        await events.put({"type": "closed"})


def federated_rounds(urls: list[str], task_id: str, rounds: int, **fields) -> tuple[list[CountingClient], list]:
    datasets = [titanic_like(40 + 10 * i, seed=60 + i) for i in range(len(urls))]
    clients = [CountingClient(url, task_id, log=lambda _: None, **fields) for url in urls]

    async def run_all():
        return await asyncio.gather(*(c.run(x, y, rounds=rounds) for c, (x, y) in zip(clients, datasets,
                                                                                       strict=True)))

    return clients, run_async(run_all())


def versions(live: LivePlatform, task_id: str) -> list[tuple[int, int | None]]:
    return live.db.query("SELECT number, round_number FROM tasks_modelversion WHERE task_id = %s ORDER BY number",
                         (task_id,))


def rounds(live: LivePlatform, task_id: str) -> list[tuple[int, str]]:
    return live.db.query("SELECT number, status FROM aggregation_round WHERE task_id = %s ORDER BY number",
                         (task_id,))


def ws_connects(daphne, path: str) -> int:
    """WebSocket connections daphne's access log shows on ``path``."""
    return len(re.findall(rf"WSCONNECT {re.escape(path)}", daphne.log_text()))


def test_participants_on_two_daphnes_close_each_round_once(platform):
    a, b = platform.daphnes
    clients, results = federated_rounds([a.url, b.url, a.url], "fed-tabular", rounds=2)
    # Each round closed once: one version per round, two rounds, every round told once to every participant,
    # the one on the other process included.
    assert versions(platform, "fed-tabular") == [(1, None), (2, 1), (3, 2)]
    assert rounds(platform, "fed-tabular") == [(1, "closed"), (2, "closed"), (3, "open")]
    for client, per_round in zip(clients, results, strict=True):
        assert client.closed_rounds == [1, 2], client.closed_rounds
        assert [(r.round, r.version, r.outcome) for r in per_round] == [(1, 2, "round_closed"),
                                                                        (2, 3, "round_closed")]
    assert ws_connects(a, "/ws/federated/fed-tabular/") == 2 and ws_connects(b, "/ws/federated/fed-tabular/") == 1
    contributions = platform.db.query("SELECT r.number, count(*) FROM aggregation_contribution c JOIN "
                                      "aggregation_round r ON c.round_id = r.id WHERE r.task_id = 'fed-tabular' "
                                      "GROUP BY r.number ORDER BY r.number")
    assert contributions == [(1, 3), (2, 3)]


def test_peers_on_two_daphnes_complete_rounds_over_the_relay(platform):
    a, b = platform.daphnes
    (task,) = [t for t in platform.get("/api/tasks/") if t["id"] == "peer-mean"]
    assert task["trainingInformation"]["allowRelay"] is True
    datasets = [titanic_like(n, seed) for n, seed in ((50, 71), (60, 72), (70, 73))]
    clients = [KerasDecentralizedClient(url, "peer-mean", log=lambda _: None) for url in (a.url, b.url, a.url)]

    async def run_all():
        return await asyncio.gather(*(c.run(x, y, rounds=2) for c, (x, y) in zip(clients, datasets, strict=True)))

    results = run_async(run_all())
    ids = sorted(c.participant_id for c in clients)
    # Every peer saw all three in both rounds and exchanged through the relay: the peer on b with both on a,
    # so signalling and every relayed part crossed from one process to the other.
    for per_round in results:
        assert [(r.round, r.peers, r.used, r.fell_back) for r in per_round] == [
            (1, ids, "relay", None), (2, ids, "relay", None)]
    finals = [c.model_vector(c.model) for c in clients]
    assert all(np.array_equal(finals[0], f) for f in finals[1:])
    assert ws_connects(a, "/ws/decentralized/peer-mean/") == 2 and ws_connects(b, "/ws/decentralized/peer-mean/") == 1


# --- The reverse-proxy example ------------------------------------------------------------------------------------

def render_nginx_conf(prefix: Path, port: int, static_root: Path, upstreams: list[int]) -> str:
    """deploy/nginx.conf with its @...@ values filled in, as its header says a deployment does."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    values = {"@USER@": getpass.getuser(), "@PREFIX@": str(prefix), "@LISTEN@": f"127.0.0.1:{port}",
              "@STATIC_ROOT@": f"{static_root}/",
              "@UPSTREAM_SERVERS@": "\n        ".join(f"server 127.0.0.1:{p};" for p in upstreams)}
    lines = []
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):  # the header's comments name the values
            for key, value in values.items():
                line = line.replace(key, value)
            assert not re.search(r"@[A-Z_]+@", line), f"a value of deploy/nginx.conf was left unfilled: {line}"
        lines.append(line)
    assert all(key in text for key in values)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def nginx(platform):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "the reverse-proxy test runs Debian's nginx: apt-get install nginx (make test does)"
    prefix = platform.root / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx_conf(prefix, port, platform.root / "static", [d.port for d in platform.daphnes]))
    proxy = Process([binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf), "-g",
                     "daemon off;"], dict(os.environ), prefix / "stdout.log")
    url = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        if not proxy.alive:
            raise AssertionError(f"nginx exited:\n{proxy.log_text()}\n{(prefix / 'error.log').read_text()}")
        try:
            return urllib.request.urlopen(url + "/api/tasks/", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(serving, timeout=30, what="nginx to serve")
        proxy.url, proxy.prefix = url, prefix
        yield proxy
    finally:
        proxy.stop()


def test_nginx_spreads_participants_over_both_daphnes_and_a_round_closes(platform, nginx):
    a, b = platform.daphnes
    # Every participant claims another address in its own X-Forwarded-For: nginx replaces it with the real one.
    clients, results = federated_rounds([nginx.url] * 4, "fed-four", rounds=1, forwarded_for=SPOOFED)
    assert versions(platform, "fed-four") == [(1, None), (2, 1)]
    assert all(c.closed_rounds == [1] for c in clients)
    assert all([(r.round, r.outcome) for r in per_round] == [(1, "round_closed")] for per_round in results)
    # Both daphnes took participants (nginx's least_conn), and each saw nginx's X-Forwarded-For, not the client's.
    on_a, on_b = ws_connects(a, "/ws/federated/fed-four/"), ws_connects(b, "/ws/federated/fed-four/")
    assert on_a >= 1 and on_b >= 1 and on_a + on_b == 4, (on_a, on_b)
    addresses = platform.db.query("SELECT DISTINCT address FROM aggregation_participant WHERE task_id = 'fed-four'")
    assert [str(address) for (address,) in addresses] == ["127.0.0.1"]  # inet on PostgreSQL, text on SQLite
    assert SPOOFED not in a.log_text() + b.log_text()


def test_nginx_serves_pages_and_collected_static_files_and_refuses_oversized_bodies(platform, nginx):
    with urllib.request.urlopen(nginx.url + "/", timeout=30) as response:
        page = response.read().decode()
        assert response.status == 200 and "Content-Security-Policy" in response.headers
    assert "/static/" in page
    script = "disco/codec.js"
    with urllib.request.urlopen(f"{nginx.url}/static/{script}", timeout=30) as response:
        assert response.read() == (ROOT / "static" / script).read_bytes()
        assert response.headers["Content-Type"] == "application/javascript"
    # nginx served it from the collected files: neither daphne saw the request.
    assert all(f"/static/{script}" not in d.log_text() for d in platform.daphnes)
    # A body over client_max_body_size is refused by nginx from its Content-Length, before any byte is read.
    connection = http.client.HTTPConnection("127.0.0.1", int(nginx.url.rsplit(":", 1)[1]), timeout=30)
    connection.putrequest("POST", "/api/tasks/")
    connection.putheader("Content-Length", str(300 * 1024 * 1024))
    connection.putheader("Content-Type", "application/octet-stream")
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
