"""Benchmark: a crowd of lightweight federated participants against a real deployment.

The deployment is started as README "Deploying on several machines" says, through tests/live_platform.py:
PostgreSQL (a fresh database on the server DATABASE_URL names; default postgres://postgres@127.0.0.1:5432/test),
Redis (channel layer and broker; --redis-url, default database 2 of the local Redis, flushed), K daphne
processes and M Celery aggregation workers (prefork, as `make worker-aggregation`). The task ``crowd`` has one
dense layer of P parameters (bench/crowd_tasks.py, converted once with tf_keras at setup).

The participants are no browsers and train nothing: a few processes (--procs) each hold many WebSocket
connections (asyncio, ``websockets``), spread over the K daphnes in turn (as a load balancer would), and per round
send a random float32 update of P parameters through the federated protocol (join once; the update encoded by
disco_client.codec and sent by disco_client.parts.send_update: announced, as the welcome's ``announceFrom`` asks,
and sent in 1 MiB parts when the server says ``update_go``, its upload slots; then wait for ``round_closed``).
Updates are made before the round starts, so the time measured is the server's.

Per configuration (P, N, K, aggregator), once no participant of the last one is connected, the participants join,
make --warmup rounds (1; not measured: the joins' aftermath) and then --rounds measured rounds. It prints:
- round s: the median over the measured rounds of first update sent -> last participant told the round closed;
- CPU-s/p-round: CPU seconds (user + system) of the server processes (every daphne, every worker and its pool
  children; not Redis or PostgreSQL) per participant per round, median over rounds;
- peak MiB: VmHWM of each server process over the configuration (reset before it through
  /proc/<pid>/clear_refs), daphnes then workers (the prefork pool child, which aggregates, counted);
- upd/4P: bytes one update takes on the wire over 4P (its float32 weights);
- I/O/4P: bytes the server processes read and wrote (rchar + wchar: files and pipes) per round over 4P,
  beside (4N+1), a budget of four copies of each update and one of the new version;
- retries: WebSocket connections the participants had to try again while joining (daphne drops a handshake
  not accepted within 5 s, its --websocket_connect_timeout; they retry with backoff as real clients do);
- join s: first participant connecting -> last one welcomed, the N joining at once (a class opening the page);
- leave s: the participants closing their sockets at once -> the database recording no participant connected.

Settings it needs for N participants from one machine, set explicitly: DISCO_MAX_CONNECTIONS_PER_ADDRESS=0 (the
per-address cap, 64 by default, would refuse the 65th participant: every participant comes from 127.0.0.1) and
DISCO_MAX_PARTICIPANTS_PER_TASK at least N (1000 by default). Each daphne holds N/K sockets: the process's open
files limit (``ulimit -n``) must exceed that.

Default matrix (the issue's): N in {100, 250, 500} at P = 200,000 and N in {50, 100} at P = 1,660,000, K in {1, 2},
aggregators mean, median and krum (f = 1). Choose a subset:
``.venv/bin/python bench/crowd.py --participants 100 --params 200000 --web-processes 2 --aggregator mean --rounds 2``
(``--n``, ``--p``, ``--daphnes`` are short aliases). After each configuration's row it prints one JSON line
(``participants``, ``params``, ``web_processes``, ``aggregator``, ``round_s``, ``cpu_s_per_participant_round``,
``peak_mib`` of each process, ...) so runs can be compared by script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/2"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_MATRIX = {200_000: [100, 250, 500], 1_660_000: [50, 100]}
TASK = "crowd"


# --- participant process: many participants on one event loop -------------------------------------------------------
class Crowd:
    def __init__(self, urls: list[str], count: int, offset: int, seed: int):
        self.urls, self.count, self.offset, self.seed = urls, count, offset, seed
        self.sockets: list = []
        self.rounds: list[int] = []
        self.versions: list[int] = []
        self.frames: list[bytes] = []
        self.specs: list[dict] = []
        self.retries = 0  # connections tried again while joining

    async def join(self) -> None:
        import websockets

        gate = asyncio.Semaphore(16)

        async def one(i: int):
            url = self.urls[(self.offset + i) % len(self.urls)]
            # daphne drops a handshake its application has not accepted within 5 s (--websocket_connect_timeout):
            # under a burst of joins, try again with backoff, as the page and the Python client do.
            for attempt in range(1, 11):
                try:
                    async with gate:
                        ws = await websockets.connect(url.replace("http", "ws", 1) + f"/ws/federated/{TASK}/",
                                                      max_size=None, ping_interval=None, origin=url, open_timeout=120,
                                                      close_timeout=5)
                        await ws.send(json.dumps({"type": "join", "client": "python"}))
                        welcome = json.loads(await asyncio.wait_for(ws.recv(), 120))
                    break
                except (OSError, websockets.WebSocketException):
                    if attempt == 10:
                        raise
                    self.retries += 1
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** attempt))
            if welcome["type"] != "welcome":
                raise SystemExit(f"refused: {welcome}")
            return ws, welcome

        self.join_started = time.time()
        joined = await asyncio.gather(*(one(i) for i in range(self.count)))
        self.join_ended = time.time()
        self.sockets = [ws for ws, _ in joined]
        self.rounds = [w["round"] for _, w in joined]
        self.versions = [w["currentVersion"] for _, w in joined]
        self.announce_from = [w.get("announceFrom") for _, w in joined]  # upload slots (aggregation.upload_slots)
        import urllib.request

        url = f"{self.urls[0]}/tasks/{TASK}/versions/{self.versions[0]}/model.json"
        manifest = json.loads(urllib.request.urlopen(url, timeout=60).read())["weightsManifest"]
        self.specs = [w for group in manifest for w in group["weights"]]

    def make_frames(self, round_index: int) -> None:
        import numpy as np

        from disco_client.codec import encode_weights

        rng = np.random.default_rng([self.seed, round_index])
        self.frames = []
        for i in range(self.count):
            tensors = [(w["name"], rng.standard_normal(w["shape"], dtype=np.float32)) for w in self.specs]
            self.frames.append(encode_weights({"type": "update", "task": TASK, "round": self.rounds[i],
                                               "baseVersion": self.versions[i], "samples": 10}, tensors))

    async def round(self) -> dict:
        from disco_client.parts import send_update

        async def go(ws) -> None:  # the server's update_go: this participant's turn to send
            while (message := json.loads(await asyncio.wait_for(ws.recv(), 900)))["type"] != "update_go":
                if message["type"] == "error":
                    raise SystemExit(f"announcement refused: {message}")

        async def one(i: int):
            ws = self.sockets[i]
            sent = time.time()
            nbytes = await send_update(ws, self.frames[i], announce_from=self.announce_from[i],
                                       granted=lambda: go(ws))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 900))
                if message["type"] == "error":
                    raise SystemExit(f"participant {i}: {message}")
                if message["type"] == "round_failed":
                    raise SystemExit(f"participant {i}: the round failed: {message}")
                if message["type"] == "round_closed" and message["round"] == self.rounds[i]:
                    break
            self.rounds[i], self.versions[i] = message["nextRound"], message["version"]
            return sent, time.time(), nbytes

        results = await asyncio.gather(*(one(i) for i in range(self.count)))
        self.frames = []
        return {"first_sent": min(r[0] for r in results), "last_closed": max(r[1] for r in results),
                "bytes": results[0][2], "join_retries": self.retries}


async def participant_process(urls: list[str], count: int, offset: int, rounds: int) -> None:
    crowd = Crowd(urls, count, offset, seed=offset)
    await crowd.join()
    loop = asyncio.get_running_loop()
    for r in range(rounds):
        crowd.make_frames(r)
        print(f"ready {crowd.join_started} {crowd.join_ended}", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        print(json.dumps(await crowd.round()), flush=True)
    print(f"leaving {time.time()}", flush=True)
    await asyncio.gather(*(ws.close() for ws in crowd.sockets))


# --- coordinator ------------------------------------------------------------------------------------------------
def _server_processes(daphnes, workers) -> list:
    import psutil

    procs = []
    for process in [*daphnes, *workers]:
        parent = psutil.Process(process.proc.pid)
        procs += [parent, *parent.children(recursive=True)]
    return procs


def _cpu(procs) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _io(procs) -> int:
    return sum(p.io_counters().read_chars + p.io_counters().write_chars for p in procs)


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _connected(live) -> int:
    return live.db.query("SELECT count(*) FROM aggregation_participant WHERE task_id = %s AND connected",
                         (TASK,))[0][0]


def run_config(live, daphnes, workers, params: int, n: int, aggregator: str, rounds: int, procs: int,
               warmup: int = 1) -> dict:
    agg_params = {"f": 1} if aggregator == "krum" else {}
    cast = "::jsonb" if live.db.postgres else ""
    live.db.query(f"UPDATE tasks_task SET min_participants = %s, aggregator = %s, aggregator_params = %s{cast} "
                  "WHERE id = %s", (n, aggregator, json.dumps(agg_params), TASK))
    # The last configuration's participants must be gone: a round waits for every connected participant, and a
    # daphne stopped with sockets open leaves its rows connected until the sweeper finds them silent (120 s).
    deadline = time.monotonic() + 300
    while _connected(live) and time.monotonic() < deadline:
        time.sleep(1)
    urls = [d.url for d in daphnes]
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    offsets = [sum(per[:i]) for i in range(procs)]
    children = [subprocess.Popen([sys.executable, __file__, "--child", json.dumps(urls), str(count),
                                  str(offset), str(warmup + rounds)], cwd=ROOT, env={**os.environ, **live.env},
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for count, offset in zip(per, offsets, strict=True) if count]
    try:
        server = _server_processes(daphnes, workers)
        for p in server:
            _reset_peak(p.pid)
        times, cpu, io, update_bytes, joins = [], [], [], 0, []
        for index in range(warmup + rounds):
            for child in children:
                line = child.stdout.readline().split()
                if not line or line[0] != "ready":
                    raise SystemExit(f"a participant process said {line!r} (exit {child.poll()})")
                joins.append((float(line[1]), float(line[2])))
            server = _server_processes(daphnes, workers)
            cpu0, io0 = _cpu(server), _io(server)
            for child in children:
                child.stdin.write("go\n")
                child.stdin.flush()
            reports = []
            for child in children:
                line = child.stdout.readline()
                if not line:
                    raise SystemExit(f"a participant process ended (exit {child.wait()})")
                reports.append(json.loads(line))
            server = _server_processes(daphnes, workers)
            retries = sum(r["join_retries"] for r in reports)
            if index < warmup:  # the first round after the joins: not measured
                continue
            # The worker's last writes (the new version, the round's row) end before the participants are told.
            cpu.append(_cpu(server) - cpu0)
            io.append(_io(server) - io0)
            times.append(max(r["last_closed"] for r in reports) - min(r["first_sent"] for r in reports))
            update_bytes = reports[0]["bytes"]
        peaks = {"daphne": [_peak_mib(d.proc.pid) for d in daphnes],
                 "worker": [max(_peak_mib(p.pid) for p in _server_processes([], [w])) for w in workers]}
        leaving = min(float(child.stdout.readline().split()[1]) for child in children)
        for child in children:
            child.wait(timeout=60)
        # Every participant has closed its socket: how long until the server has recorded every departure.
        deadline = time.monotonic() + 300
        while _connected(live) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = time.time() - leaving
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return {"participants": n, "params": params, "web_processes": len(daphnes), "workers": len(workers),
            "aggregator": aggregator, "round_s": statistics.median(times), "rounds_s": times,
            "cpu_s_per_participant_round": statistics.median(cpu) / n, "peak_mib": peaks,
            "update_over_4p": update_bytes / (4 * params), "io_over_4p": statistics.median(io) / (4 * params),
            "budget_4n1": 4 * n + 1, "join_retries": retries,
            "join_s": max(end for _, end in joins) - min(start for start, _ in joins), "leave_s": left}


def run_params(params: int, ns: list[int], ks: list[int], aggregators: list[str], rounds: int, workers_count: int,
               procs: int, redis_url: str, keep: bool, warmup: int = 1) -> list[dict]:
    from tests.live_platform import LivePlatform

    results = []
    root = Path(tempfile.mkdtemp(prefix=f"disco-crowd-{params}-"))
    live = LivePlatform(root, redis_url=redis_url, DISCO_TASK_PROVIDERS="bench.crowd_tasks.CrowdTask",
                        DISCO_CROWD_PARAMS=str(params), DISCO_MAX_CONNECTIONS_PER_ADDRESS="0",
                        DISCO_MAX_PARTICIPANTS_PER_TASK=str(max(1000, max(ns))), DISCO_SWEEP_SECONDS="5",
                        LOG_LEVEL="WARNING")
    try:
        live.manage("migrate", "--noinput")
        live.manage("load_default_tasks", "--only", TASK, REDIS_URL="")  # converted here, once, with tf_keras
        workers = [live.worker("aggregation") for _ in range(workers_count)]
        for k in ks:
            daphnes = [live.daphne() for _ in range(k)]
            try:
                for aggregator in aggregators:
                    for n in ns:
                        result = run_config(live, daphnes, workers, params, n, aggregator, rounds, procs, warmup)
                        print_row(result)
                        print(json.dumps(result), flush=True)  # one line per configuration, for scripts
                        results.append(result)
            finally:
                for d in daphnes:
                    d.stop()
                    live.processes.remove(d)
    finally:
        live.stop()
        if not keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    return results


HEADER = (f"{'P':>9} {'N':>4} {'K':>2} {'M':>2} {'aggregator':<10} {'round s':>8} {'CPU-s/p-round':>13} "
          f"{'upd/4P':>7} {'I/O/4P':>8} {'(4N+1)':>6} {'retries':>7} {'join s':>6} {'leave s':>7}  "
          "peak MiB (daphnes | workers)")


def print_row(r: dict) -> None:
    peaks = " ".join(f"{m:.0f}" for m in r["peak_mib"]["daphne"]) + " | " + \
        " ".join(f"{m:.0f}" for m in r["peak_mib"]["worker"])
    print(f"{r['params']:>9,} {r['participants']:>4} {r['web_processes']:>2} {r['workers']:>2} "
          f"{r['aggregator']:<10} {r['round_s']:>8.2f} "
          f"{r['cpu_s_per_participant_round']:>13.4f} {r['update_over_4p']:>7.4f} {r['io_over_4p']:>8.1f} "
          f"{r['budget_4n1']:>6} {r['join_retries']:>7} {r['join_s']:>6.2f} {r['leave_s']:>7.2f}  {peaks}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", "--n", type=int, nargs="+", dest="n",
                        help="N, participants (default: the matrix's for each P)")
    parser.add_argument("--params", "--p", type=int, nargs="+", dest="p",
                        help="P, parameters, multiples of 1000 (default: 200000 1660000)")
    parser.add_argument("--web-processes", "--daphnes", type=int, nargs="+", default=[1, 2], dest="daphnes",
                        help="K, daphne processes")
    parser.add_argument("--workers", type=int, default=1, help="M, aggregation worker processes")
    parser.add_argument("--aggregator", nargs="+", default=["mean", "median", "krum"])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="rounds before those, not measured")
    parser.add_argument("--procs", type=int, default=4, help="participant processes")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed at the start of each P")
    parser.add_argument("--json", help="also write every result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the platform's folder (logs, media)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # a participant process (run_config)
    args = parser.parse_args()
    if args.child:
        urls, count, offset, rounds = args.child
        asyncio.run(participant_process(json.loads(urls), int(count), int(offset), int(rounds)))
        return
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    matrix = {p: args.n or DEFAULT_MATRIX.get(p, [100]) for p in (args.p or DEFAULT_MATRIX)}
    print(HEADER, flush=True)
    results = []
    for params, ns in matrix.items():
        results += run_params(params, ns, args.daphnes, args.aggregator, args.rounds, args.workers, args.procs,
                              args.redis_url, args.keep, args.warmup)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
