"""Benchmark: federated rounds across real processes, with no training.

For each P (parameters) and N (participants): a fresh platform (SQLite file, Redis channel
layer and broker, one daphne, one Celery aggregation worker with the solo pool) and N
participant *processes* that each send one float32 update a round and wait for the
round's end. Prints per configuration the median round time (first update sent -> last
participant told the round closed), the worker's aggregation time (reading the N stored
updates and combining them, as the worker logs it) next to the time numpy needs just to
read them once, bytes per update, loopback bytes moved by
the server processes per round, server CPU-seconds per participant per round, and the
server processes' peak memory (and their memory once the participants have joined, before
the first update).

Run from the project root (Redis must be running): ``.venv/bin/python bench/round.py``
(``--params 200000 1660000 --participants 2 10 50 --rounds 5`` are the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REDIS_URL = "redis://127.0.0.1:6379/11"


# --- participant process ------------------------------------------------------------------
async def participant(url: str, rounds: int) -> None:
    """One participant: connect, say ready, then per 'go' line send an update and report timings."""
    import numpy as np
    import websockets

    from disco_client.codec import encode_weights
    from disco_client.parts import send_update

    ws_url = url.replace("http", "ws", 1) + "/ws/federated/bench/"
    async with websockets.connect(ws_url, max_size=None, ping_interval=None, origin=url) as ws:
        await ws.send(json.dumps({"type": "join", "client": "python"}))
        welcome = json.loads(await ws.recv())
        version = welcome["currentVersion"]
        manifest = json.loads(urllib.request.urlopen(f"{url}/tasks/bench/versions/{version}/model.json").read())
        specs = [w for g in manifest["weightsManifest"] for w in g["weights"]]
        rng = np.random.default_rng(os.getpid())
        tensors = [(w["name"], rng.normal(size=w["shape"]).astype(np.float32)) for w in specs]
        loop = asyncio.get_running_loop()
        print("ready", flush=True)
        round_number = welcome["round"]
        for _ in range(rounds):
            await loop.run_in_executor(None, sys.stdin.readline)
            frame = encode_weights({"type": "update", "task": "bench", "round": round_number,
                                    "baseVersion": version, "samples": 10}, tensors)
            sent = time.time()
            sent_bytes = await send_update(ws, frame)  # the frame, and its announcement when in parts
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "error":
                    raise SystemExit(message["reason"])
                if message["type"] == "round_closed":
                    break
            print(json.dumps({"sent": sent, "closed": time.time(), "bytes": sent_bytes}), flush=True)
            round_number, version = message["nextRound"], message["version"]


# --- coordinator ----------------------------------------------------------------------------
def _env(workdir: Path, params: int, participants: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="disco_site.settings", DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
               MEDIA_ROOT=str(workdir / "media"), REDIS_URL=REDIS_URL,
               DISCO_TASK_PROVIDERS="bench.round_tasks.BenchTask",
               DISCO_BENCH_PARAMS=str(params), DISCO_BENCH_PARTICIPANTS=str(participants), PYTHONUNBUFFERED="1")
    return env


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _read_once_seconds(paths: list[Path]) -> float:
    import numpy as np

    start = time.perf_counter()
    for path in paths:
        data = np.fromfile(path, dtype=np.uint8)
        float(data[:: 4096].sum())  # touch the data: a read, not a lazy map
    return time.perf_counter() - start


def run_config(params: int, participants: int, rounds: int) -> dict:
    import psutil
    import redis

    from disco_site.limits import daphne_ws_args

    redis.Redis.from_url(REDIS_URL).flushdb()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="disco-bench-") as tmp:
        workdir = Path(tmp)
        env = _env(workdir, params, participants)
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run([*manage, "load_default_tasks", "--only", "bench"], cwd=ROOT, env={**env, "REDIS_URL": ""},
                       check=True, capture_output=True)
        port = 18000 + participants
        url = f"http://127.0.0.1:{port}"
        daphne = subprocess.Popen([str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                   *daphne_ws_args(env),
                                   "disco_site.asgi:application"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worker_log = workdir / "worker.log"
        with open(worker_log, "w") as log:
            worker = subprocess.Popen([str(bin_dir / "celery"), "-A", "disco_site", "worker", "-Q", "aggregation",
                                       "--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs: list[subprocess.Popen] = []
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/api/tasks/", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            while "ready." not in worker_log.read_text():
                time.sleep(0.2)
            for _ in range(participants):
                procs.append(subprocess.Popen([sys.executable, __file__, "--participant", url, str(rounds)],
                                              cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              text=True))
            for p in procs:
                assert p.stdout.readline().strip() == "ready"
            server = [psutil.Process(daphne.pid), psutil.Process(worker.pid)]
            idle_mib = sum(s.memory_info().rss for s in server) / 2**20  # participants connected, no update yet
            times, cpu, moved, frame_bytes = [], [], [], 0
            for _ in range(rounds):
                cpu0 = sum(sum(s.cpu_times()[:2]) for s in server)
                io0 = sum(s.io_counters().read_chars + s.io_counters().write_chars for s in server)
                for p in procs:
                    p.stdin.write("go\n")
                    p.stdin.flush()
                reports = [json.loads(p.stdout.readline()) for p in procs]
                time.sleep(0.3)  # let the worker finish writing before reading its counters
                times.append(max(r["closed"] for r in reports) - min(r["sent"] for r in reports))
                cpu.append(sum(sum(s.cpu_times()[:2]) for s in server) - cpu0)
                moved.append(sum(s.io_counters().read_chars + s.io_counters().write_chars for s in server) - io0)
                frame_bytes = reports[0]["bytes"]
            agg = [float(x) for x in re.findall(r"aggregated \d+ updates with \w+ in ([0-9.]+) s",
                                                 worker_log.read_text())]
            rounds_dir = workdir / "media" / "contributions" / "bench"
            last_round = sorted(rounds_dir.iterdir(), key=lambda p: int(p.name))[-1]
            read_once = _read_once_seconds(sorted(last_round.iterdir()))
            peak_web, peak_worker = _peak_mib(daphne.pid), _peak_mib(worker.pid)
        finally:
            for p in procs:
                p.kill()
            daphne.terminate()
            worker.terminate()
            daphne.wait()
            worker.wait()
    four_p = 4 * params
    return {
        "P": params, "N": participants, "round_s": statistics.median(times),
        "aggregate_s": statistics.median(agg) if agg else float("nan"), "read_once_s": read_once,
        "bytes_per_update": frame_bytes / four_p, "server_io_per_round": statistics.median(moved) / four_p,
        "cpu_per_participant": statistics.median(cpu) / participants, "peak_mib": peak_web + peak_worker,
        "peak_web": peak_web, "peak_worker": peak_worker, "idle_mib": idle_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=int, nargs="+", default=[200_000, 1_660_000])
    parser.add_argument("--participants", type=int, nargs="+", default=[2, 10, 50])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--participant", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.participant:
        asyncio.run(participant(args.participant[0], int(args.participant[1])))
        return
    print(f"{'P':>9} {'N':>3} {'round s':>8} {'aggregate s':>11} {'read once s':>11} {'bytes/4P':>9} "
          f"{'server I/O /4P':>14} {'(4N+1)':>6} {'CPU-s/particip.':>15} {'peak MiB':>9} {'(web+worker)':>13}")
    for params in args.params:
        for n in args.participants:
            r = run_config(params, n, args.rounds)
            print(f"{r['P']:>9,} {r['N']:>3} {r['round_s']:>8.3f} {r['aggregate_s']:>11.3f} {r['read_once_s']:>11.3f} "
                  f"{r['bytes_per_update']:>9.4f} {r['server_io_per_round']:>14.1f} {4 * n + 1:>6} "
                  f"{r['cpu_per_participant']:>15.4f} {r['peak_mib']:>9.0f} "
                  f"{r['peak_web']:>6.0f}+{r['peak_worker']:<6.0f} {r['idle_mib']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
