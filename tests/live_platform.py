"""Start the platform as separate processes, as `make run` and a deployment do, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from disco_site.limits import daphne_ws_args

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-quic", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def platform_env(workdir: Path, **extra: str) -> dict[str, str]:
    """An environment for a separate platform: its own SQLite file and media folder, embedded by default.

    Its sweeper (the web process's when embedded, the aggregation worker's with a broker) runs every
    second, so deadlines in tests pass within a second of their time rather than five.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MEDIA_ROOT")}
    env.update(DJANGO_SETTINGS_MODULE="disco_site.settings", DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
               MEDIA_ROOT=str(workdir / "media"), PYTHONUNBUFFERED="1", DISCO_SWEEP_SECONDS="1")
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@contextmanager
def daphne(env: dict[str, str], log: Path, port: int | None = None) -> Iterator[str]:
    """Serve the platform with daphne (on a free port unless given); yields its base URL."""
    port = port or free_port()
    with open(log, "a") as out:
        proc = subprocess.Popen([str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                 *daphne_ws_args(env), "disco_site.asgi:application"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/api/tasks/", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"daphne did not start:\n{log.read_text()}") from None
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:  # with channels-redis, open consumers end only when their blocking receive returns
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def worker(env: dict[str, str], log: Path, queue: str = "conversion",
           pool: str = "solo") -> Iterator[subprocess.Popen]:
    """A real Celery worker process consuming ``queue``, in a process group of its own (see ``kill_group``)."""
    with open(log, "w") as out:
        proc = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "disco_site", "worker", "-Q", queue, "--pool", pool,
                                 "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process and its children, as a crash or an OOM kill would."""
    os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    proc.wait(timeout=10)
