"""Start the platform as separate processes, as `make run` and a deployment do, for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from disco_site.limits import daphne_ws_args

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-quic", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def platform_env(workdir: Path, **extra: str) -> dict[str, str]:
    """An environment for a separate platform: its own media folder, embedded, on a SQLite file unless ``extra``
    names a database (``LivePlatform`` gives it the one the environment selects).

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


# --- The real stack: the environment's database and Redis, processes a test can kill and restart ---------------------

# Multi-process tests talk to the environment's Redis (`.ci/run` sets REDIS_URL); without one, this database of the
# machine's Redis, flushed by the test that starts a platform on it.
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/13"


def services_redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_TEST_REDIS_URL


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` seconds pass (AssertionError).

    The only way these tests wait: for an event, with a limit, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def wait_for_async(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.02) -> T:
    """``wait_for`` inside an event loop: other coroutines (the participants) run while it waits."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


class Database:
    """A fresh database of one test (or module): on the PostgreSQL server ``DATABASE_URL`` names, else a SQLite file.

    PostgreSQL: ``test_<random>`` is created (optionally as a copy of ``template``, instantly) and dropped by
    ``drop()``. SQLite: a file in ``workdir`` (copied from the template's)."""

    def __init__(self, workdir: Path, *, template: Database | None = None, server_url: str | None = None):
        server_url = os.environ.get("DATABASE_URL", "") if server_url is None else server_url
        self.postgres = server_url.startswith(("postgres://", "postgresql://"))
        if self.postgres:
            parts = urllib.parse.urlsplit(server_url)
            self.name = f"test_{secrets.token_hex(6)}"
            self._admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
            self.url = urllib.parse.urlunsplit(parts._replace(path="/" + self.name))
            with self._admin() as conn:
                clause = f" TEMPLATE {template.name}" if template is not None else ""
                conn.execute(f"CREATE DATABASE {self.name}{clause}")
        else:
            self.path = workdir / "db.sqlite3"
            self.name = str(self.path)
            self.url = f"sqlite:///{self.path}"
            if template is not None:
                shutil.copyfile(template.path, self.path)

    def _admin(self):
        import psycopg

        return psycopg.connect(self._admin_url, autocommit=True)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one statement, in a connection of its own (``%s`` placeholders on both engines)."""
        if self.postgres:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        with sqlite3.connect(self.path, timeout=30) as conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()

    @contextmanager
    def lock_writes(self, table: str) -> Iterator[None]:
        """Until the block ends, writes to ``table`` wait and reads go on (PostgreSQL); SQLite: every write waits."""
        if self.postgres:
            import psycopg

            with psycopg.connect(self.url) as conn:
                conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
                yield
                conn.rollback()
            return
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()

    def waiting_for_locks(self, query_like: str = "%") -> int:
        """Sessions blocked on a lock in a statement LIKE ``query_like`` (PostgreSQL only; 0 on SQLite)."""
        if not self.postgres:
            return 0
        return self.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                          "AND query LIKE %s", (self.name, query_like))[0][0]

    def raw_contents(self) -> bytes:
        """Every byte the database holds for its tables, binary values as they are stored (to look for a secret in).

        PostgreSQL: a binary ``COPY`` of every table (bytea and text verbatim); SQLite: its files."""
        if not self.postgres:
            return b"".join(_read_if_present(p) for p in self.path.parent.glob(self.path.name + "*"))
        import psycopg

        chunks: list[bytes] = []
        with psycopg.connect(self.url, autocommit=True) as conn:
            tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                with conn.cursor().copy(f'COPY "{table}" TO STDOUT (FORMAT binary)') as copy:
                    chunks.extend(bytes(data) for data in copy)
        return b"".join(chunks)

    def drop(self) -> None:
        if self.postgres:
            with self._admin() as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def _read_if_present(path: Path) -> bytes:
    """SQLite's WAL side files come and go as connections open and close."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


class Process:
    """A platform process in a process group of its own, so ``kill()`` takes its children down with it."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path):
        self.argv, self.env, self.log = argv, env, log
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the process and its children, as a crash or an OOM kill would: nothing is cleaned up."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Said, because a process that ignores SIGTERM costs every test that stops it the whole timeout.
                print(f"{self.argv[:4]} did not stop within {timeout:g} s of SIGTERM: killed (log: {self.log})",
                      file=sys.stderr)
                self.kill()
        if self.proc is not None:  # children left by a clean stop (a prefork pool) go too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


class Daphne(Process):
    """daphne serving the platform on ``port``; ``restart()`` serves again on the same port."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None, proxy_headers: bool = False):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # --proxy-headers: the client's address is X-Forwarded-For's (as behind deploy/nginx.conf), else the socket's.
        super().__init__([str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), *daphne_ws_args(env),
                          *(["--proxy-headers"] if proxy_headers else []), "disco_site.asgi:application"], env, log)

    def start(self) -> None:
        wait_for(lambda: port_is_free(self.port), timeout=30, what=f"port {self.port} to be free")
        super().start()
        wait_for(self._serving, timeout=60, what=f"daphne on port {self.port} (log: {self.log})")

    def _serving(self) -> bool:
        if not self.alive:
            raise AssertionError(f"daphne exited:\n{self.log_text()}")
        try:
            urllib.request.urlopen(self.url + "/api/tasks/", timeout=2).read()
            return True
        except OSError:
            return False


class Worker(Process):
    """A Celery worker consuming ``queue``; ``ready`` once it listens."""

    def __init__(self, env: dict[str, str], log: Path, queue: str = "aggregation", pool: str = "prefork"):
        self.queue = queue
        super().__init__([str(VENV_BIN / "celery"), "-A", "disco_site", "worker", "-Q", queue, "--pool", pool,
                          "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                          "--without-heartbeat", "-n", f"{queue}-{secrets.token_hex(3)}@%h"], env, log)

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: " ready." in self.log_text() or not self.alive, timeout=timeout,
                 what=f"the {self.queue} worker to be ready (log: {self.log})")
        assert self.alive, self.log_text()


class RedisServer(Process):
    """A private redis-server (no persistence) that a test may kill and restart on the same port."""

    def __init__(self, workdir: Path, port: int | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        super().__init__(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)], dict(os.environ),
                         workdir / f"redis-{self.port}.log")

    def start(self) -> None:
        wait_for(lambda: port_is_free(self.port), timeout=30, what=f"port {self.port} to be free")
        super().start()
        wait_for(self.ping, timeout=10, what=f"redis-server on port {self.port}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False


def port_is_free(port: int) -> bool:
    """Whether a server may listen on ``port`` (as servers do, with SO_REUSEADDR: closed connections may linger)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def broker_idle(redis_url: str, queue: str) -> bool:
    """No message of ``queue`` waiting in Redis and none taken but unacknowledged: nothing more will be delivered."""
    import redis

    client = redis.Redis.from_url(redis_url)
    return client.llen(queue) == 0 and client.zcard("unacked_index") == 0


def pending_tasks(redis_url: str) -> list[str]:
    """Names of the Celery tasks waiting in any queue or taken by a worker and not acknowledged yet."""
    import redis

    client = redis.Redis.from_url(redis_url)
    raw = list(client.hvals("unacked"))
    for key in client.scan_iter(_type="list"):
        raw += client.lrange(key, 0, -1)
    names = []
    for item in raw:
        message = json.loads(item)
        message = message[0] if isinstance(message, list) else message  # unacked: [message, exchange, key]
        names.append(message.get("headers", {}).get("task", "?"))
    return names


def unacked_ages(redis_url: str) -> list[float]:
    """Seconds since each message taken by a worker but not acknowledged was delivered (kombu's Redis transport)."""
    import redis

    now = time.time()
    return [now - score for _, score in redis.Redis.from_url(redis_url).zrange("unacked_index", 0, -1,
                                                                               withscores=True)]


class LivePlatform:
    """The platform as a deployment runs it: daphne processes and Celery workers on one database and one Redis.

    The database is fresh (see ``Database``); ``redis_url`` is the environment's unless a test brings its own
    (a private ``RedisServer`` it restarts). ``stop()`` ends every process and drops the database."""

    def __init__(self, root: Path, *, redis_url: str | None = None, template: LivePlatform | None = None,
                 flush_redis: bool = True, **extra: str):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # None: the environment's Redis; "": embedded (in-memory channel layer, jobs run in the web process).
        self.redis_url = services_redis_url() if redis_url is None else redis_url
        if flush_redis and self.redis_url:
            import redis

            redis.Redis.from_url(self.redis_url).flushdb()
        self.db = Database(root, template=template.db if template else None)
        media = root / "media"
        if template is not None:
            shutil.copytree(template.root / "media", media, dirs_exist_ok=True)
        self.env = platform_env(root, DATABASE_URL=self.db.url, REDIS_URL=self.redis_url, MEDIA_ROOT=str(media),
                                CELERY_SKIP_CHECKS="1", **extra)
        self.processes: list[Process] = []

    @classmethod
    def selected(cls, root: Path, *, redis_db: int, **extra: str) -> LivePlatform:
        """The mode the environment selects: its database always; with ``REDIS_URL``, that Redis server (on
        database ``redis_db``, so a platform living for a whole module or session shares no queue with the
        platforms other tests start and flush), else embedded."""
        selected = os.environ.get("REDIS_URL", "")
        redis_url = urllib.parse.urlunsplit(urllib.parse.urlsplit(selected)._replace(path=f"/{redis_db}")) \
            if selected else ""
        return cls(root, redis_url=redis_url, **extra)

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    def start_workers(self) -> None:
        """With a broker, the aggregation and conversion workers a deployment runs (embedded: nothing to start)."""
        if not self.embedded:
            self.worker("aggregation")
            self.worker("conversion", pool="solo")

    def manage(self, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
        return manage({**self.env, **env}, *args, timeout=timeout)

    def daphne(self, port: int | None = None, proxy_headers: bool = False) -> Daphne:
        n = sum(isinstance(p, Daphne) for p in self.processes)
        process = Daphne(self.env, self.root / f"daphne-{n}.log", port, proxy_headers)
        self.processes.append(process)
        return process

    def worker(self, queue: str = "aggregation", pool: str = "prefork", ready: bool = True) -> Worker:
        n = sum(isinstance(p, Worker) for p in self.processes)
        process = Worker(self.env, self.root / f"worker-{queue}-{n}.log", queue, pool)
        self.processes.append(process)
        if ready:
            process.wait_ready()
        return process

    def get(self, path: str, base: str | None = None) -> Any:
        base = base or next(p.url for p in self.processes if isinstance(p, Daphne) and p.alive)
        with urllib.request.urlopen(base + path, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        try:
            for process in reversed(self.processes):
                process.stop()
        finally:
            self.db.drop()
