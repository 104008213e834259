"""The Python participant recovers by itself (disco_client.remote, disco_client.participant).

A fake server (``websockets.serve`` on a free port, no Django) plays each case: a connection that
closes mid-round, ``stale_round``, ``round_failed``, a server that stops answering. No fixed sleeps:
every wait has a time limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import websockets

from disco_client.participant import FederatedClient
from disco_client.remote import ParticipantError, Recovery, wait_limits


def test_backoff_grows_by_the_factor_and_is_bounded():
    recovery = Recovery(initial_delay=0.1, max_delay=1.0, factor=2, jitter=0)
    assert [recovery.delay(k) for k in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_jitter_shortens_a_delay_by_at_most_its_fraction():
    recovery = Recovery(initial_delay=1.0, max_delay=1.0, jitter=0.5)
    assert recovery.delay(1, lambda: 0.0) == 1.0
    assert recovery.delay(1, lambda: 1.0) == 0.5


def test_wait_limits_derive_from_the_round_deadline():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    deadline = (now + timedelta(seconds=30)).isoformat()
    assert wait_limits(60, deadline, now=now.timestamp()) == {"open": 15.0, "accepted": 60.0, "round": 90.0,
                                                              "status": 15.0}
    assert wait_limits(60, None, round=0.5)["round"] == 0.5


UPDATE = [("w", np.array([1.0, 2.0], dtype=np.float32))]  # one tensor, in the manifest's order


Script = Callable[[int, dict, "websockets.ServerConnection"], object]


class FakeServer:
    """Answers each client message with ``script(connection_index, message, ws)`` (an async function)."""

    def __init__(self, script):
        self.script = script
        self.connections: list[list[dict]] = []

    async def handler(self, ws):
        index = len(self.connections)
        received: list[dict] = []
        self.connections.append(received)
        async for raw in ws:
            message = {"type": "update", "bytes": len(raw)} if isinstance(raw, bytes) else json.loads(raw)
            received.append(message)
            await self.script(index, message, ws)


def welcome(round_number, version, token="tok"):
    return json.dumps({"type": "welcome", "participantId": "p1", "resumeToken": token, "round": round_number,
                       "currentVersion": version, "participants": 1, "waitingFor": 0})


async def run_client(script, **options):
    fake = FakeServer(script)
    logs: list[str] = []
    async with websockets.serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = FederatedClient(f"http://127.0.0.1:{port}", "fed", log=logs.append, weight_order=["w"],
                                 recovery=options.pop("recovery", Recovery(initial_delay=0.01, max_delay=0.04,
                                                                           jitter=0, attempts=4)),
                                 deadline_seconds=30, **options)
        await asyncio.wait_for(client.connect(), 10)
        try:
            outcome = await asyncio.wait_for(client.contribute(UPDATE, round_number=client.seen["round"],
                                                               base_version=client.seen["version"], samples=5), 20)
        finally:
            await client.close()
    return outcome, fake, client, logs


async def test_a_connection_closing_mid_round_reconnects_with_the_resume_token_and_syncs():
    async def script(index, message, ws):
        if message["type"] == "join":
            await ws.send(welcome(1, 1, "first") if index == 0 else welcome(2, 2, "second"))
        elif message["type"] == "update":
            await ws.send(json.dumps({"type": "accepted", "round": 1, "samples": 5}))
            await ws.close()

    outcome, fake, client, logs = await run_client(script)
    assert len(fake.connections) == 2
    assert fake.connections[1][0] == {"type": "join", "client": "python", "resumeToken": "first"}
    assert outcome == {"type": "sync", "reason": "reconnected", "round": 1, "version": 2, "nextRound": 2}
    assert client.resume_token == "second"
    assert any("reconnecting (attempt 1 of 4)" in line for line in logs)
    assert any(line.startswith("Reconnected: round 2") for line in logs)


async def test_the_update_goes_again_after_a_reconnect_and_a_duplicate_counts_as_accepted():
    async def script(index, message, ws):
        if message["type"] == "join":
            await ws.send(welcome(1, 1))
        elif message["type"] == "update" and index == 0:
            await ws.close()
        elif message["type"] == "update":
            await ws.send(json.dumps({"type": "error", "code": "duplicate", "reason": "Already sent."}))
            await ws.send(json.dumps({"type": "round_closed", "round": 1, "version": 2, "nextRound": 2,
                                      "contributors": 2}))

    outcome, fake, _, _ = await run_client(script)
    assert [m["type"] for m in fake.connections[1]] == ["join", "update"]
    assert fake.connections[1][0]["resumeToken"] == "tok"
    assert outcome["type"] == "round_closed"
    assert outcome["version"] == 2


async def test_reconnection_gives_up_after_the_configured_attempts():
    async def script(index, message, ws):
        if message["type"] == "join" and index == 0:
            await ws.send(welcome(1, 1))
        else:
            await ws.close()  # the server refuses every reconnection

    with pytest.raises(ParticipantError) as caught:
        await run_client(script, recovery=Recovery(initial_delay=0.01, max_delay=0.02, jitter=0, attempts=3))
    assert caught.value.code == "reconnect_failed"
    assert "after 3 attempts" in str(caught.value)


async def test_stale_round_means_sync_and_continue():
    async def script(index, message, ws):
        if message["type"] == "join":
            await ws.send(welcome(1, 1))
        elif message["type"] == "update":
            await ws.send(json.dumps({"type": "error", "code": "stale_round", "reason": "Round 1 is not open."}))
        elif message["type"] == "status":
            await ws.send(json.dumps({"type": "status", "round": 3, "currentVersion": 3}))

    outcome, fake, _, logs = await run_client(script)
    assert outcome == {"type": "sync", "reason": "stale_round", "round": 1, "version": 3, "nextRound": 3}
    assert len(fake.connections) == 1
    assert any("synced with the server (stale_round)" in line for line in logs)


async def test_round_failed_continues_from_the_version_the_server_names():
    async def script(index, message, ws):
        if message["type"] == "join":
            await ws.send(welcome(4, 7))
        elif message["type"] == "update":
            await ws.send(json.dumps({"type": "accepted", "round": 4, "samples": 5}))
            await ws.send(json.dumps({"type": "round_failed", "round": 4, "reason": "aggregation crashed",
                                      "nextRound": 5, "version": 7}))

    outcome, _, _, _ = await run_client(script)
    assert outcome == {"type": "round_failed", "round": 4, "reason": "aggregation crashed", "nextRound": 5,
                       "version": 7}


async def test_a_round_that_stays_open_is_probed_then_the_client_trains_on():
    async def script(index, message, ws):
        if message["type"] == "join":
            await ws.send(welcome(1, 1))
        elif message["type"] == "update":
            await ws.send(json.dumps({"type": "accepted", "round": 1, "samples": 5}))
        elif message["type"] == "status":
            await ws.send(json.dumps({"type": "status", "round": 1, "currentVersion": 1}))

    outcome, fake, _, _ = await run_client(script, waits={"round": 0.05, "status": 5},
                                           recovery=Recovery(probes=2))
    assert outcome == {"type": "sync", "reason": "timeout", "round": 1, "version": 1, "nextRound": 1}
    assert [m["type"] for m in fake.connections[0]] == ["join", "update", "status", "status"]


async def test_a_server_that_answers_nothing_is_dropped_and_reconnected():
    async def script(index, message, ws):
        if message["type"] == "join":
            await ws.send(welcome(1, 1) if index == 0 else welcome(2, 2))
        # otherwise silent: no accepted, no status

    outcome, fake, _, _ = await run_client(script, waits={"accepted": 0.05, "status": 0.05})
    assert len(fake.connections) == 2
    assert outcome == {"type": "sync", "reason": "reconnected", "round": 1, "version": 2, "nextRound": 2}


async def test_a_peer_reconnects_when_the_signalling_connection_closes_while_it_waits_for_peers():
    from disco_client.peer import DecentralizedClient

    deadline = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()

    async def script(index, message, ws):
        if message["type"] == "join":
            await ws.send(welcome(1, None, "first") if index == 0 else welcome(2, None, "second"))
        elif message["type"] == "ready" and index == 0:
            await ws.close()
        elif message["type"] == "ready":
            await ws.send(json.dumps({"type": "peers", "round": message["round"], "peers": ["p1"],
                                      "deadline": deadline, "publicKeys": {}}))
        elif message["type"] == "received":
            await ws.send(json.dumps({"type": "agreed", "round": message["round"], "peers": ["p1"]}))
        elif message["type"] == "done":
            await ws.send(json.dumps({"type": "round_closed", "round": message["round"], "nextRound": 3}))

    fake = FakeServer(script)
    logs: list[str] = []
    async with websockets.serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = DecentralizedClient(f"http://127.0.0.1:{port}", "dec", log=logs.append, deadline_seconds=30,
                                     recovery=Recovery(initial_delay=0.01, jitter=0, attempts=3))
        await asyncio.wait_for(client.connect(), 10)
        try:
            result = await asyncio.wait_for(client.exchange([("w", np.ones(2, np.float32))], 5, 1), 20)
        finally:
            await client.close()
    assert fake.connections[1][0] == {"type": "join", "client": "python", "resumeToken": "first"}
    assert [m["type"] for m in fake.connections[1]] == ["join", "ready", "received", "done"]
    assert fake.connections[1][1]["round"] == 2
    assert (result.round, result.next_round) == (2, 3)
    assert any("reconnecting (attempt 1 of 3)" in line for line in logs)
