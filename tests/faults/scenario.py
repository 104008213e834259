"""One fault-injection run on the real stack, shared by ``tests/faults`` (which assert) and ``bench/faults.py``
(which prints): PostgreSQL (or the environment's database), Redis, two daphne processes serving the same task,
a prefork Celery aggregation worker, and numpy participants spread over both daphnes.

A run: the participants train ``rounds`` rounds of ``fault-tabular``; in round ``fault_round`` the participants
named in ``hold`` wait before sending while the others' updates are stored; then the fault is injected and they
go on. A watcher thread notes when each version appears, so the time to recover is the seconds from the fault to
the next version (of the task the fault concerns). The participants finish once the task reaches version
``rounds + 1``; ``Outcome`` holds what the checks need.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.faults.fault_tasks import PROVIDERS
from tests.faults.numpy_participant import NumpyParticipant, generated_data
from tests.live_platform import LivePlatform, RedisServer, pending_tasks, unacked_ages, wait_for

TASK = "fault-tabular"
INSERTING_VERSION = 'INSERT INTO "tasks_modelversion"%'  # what aggregate_round waits in, under lock_writes
VISIBILITY_TIMEOUT = 3  # seconds before a message a dead worker took is delivered again (the env of every process)
# A round still aggregating this long after it started is queued again by the sweeper (every second).
STUCK_AFTER = 5
ENV = {"DISCO_TASK_PROVIDERS": PROVIDERS, "DISCO_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
       "DISCO_AGGREGATION_STUCK_AFTER": str(STUCK_AFTER), "LOG_LEVEL": "INFO"}


def make_template(root: Path) -> LivePlatform:
    """A migrated database with ``fault-tabular`` and its initial version, converted once (in-process)."""
    template = LivePlatform(root, flush_redis=False, **ENV)
    try:
        template.manage("migrate", "--noinput")
        template.manage("load_default_tasks", "--only", TASK, REDIS_URL="")
    except BaseException:
        template.stop()
        raise
    return template


class Stack:
    """A platform copied from the template: two daphnes, an aggregation worker, optionally a private Redis."""

    def __init__(self, root: Path, template: LivePlatform, *, private_redis: bool = False):
        self.redis = RedisServer(root) if private_redis else None
        self.platform = LivePlatform(root, template=template, redis_url=self.redis.url if self.redis else None, **ENV)
        try:
            self.daphnes = [self.platform.daphne(), self.platform.daphne()]
            self.worker = self.platform.worker("aggregation")
        except BaseException:
            self.stop()
            raise

    @property
    def db(self):
        return self.platform.db

    def versions(self, task_id: str = TASK) -> list[tuple[int, int | None, int | None]]:
        """(number, round number, parent number) of every version of the task."""
        return self.db.query("SELECT v.number, v.round_number, p.number FROM tasks_modelversion v LEFT JOIN "
                             "tasks_modelversion p ON v.parent_id = p.id WHERE v.task_id = %s ORDER BY v.number",
                             (task_id,))

    def rounds(self, task_id: str = TASK) -> list[tuple[int, str, int | None]]:
        return self.db.query("SELECT r.number, r.status, v.number FROM aggregation_round r LEFT JOIN tasks_modelversion"
                             " v ON r.result_version_id = v.id WHERE r.task_id = %s ORDER BY r.number", (task_id,))

    def contributions(self, round_number: int) -> int:
        return self.db.query("SELECT count(*) FROM aggregation_contribution c JOIN aggregation_round r ON "
                             "c.round_id = r.id WHERE r.task_id = %s AND r.number = %s", (TASK, round_number))[0][0]

    def version_vector(self, number: int) -> np.ndarray:
        import json

        base = next(d.url for d in self.daphnes if d.alive) + f"/tasks/{TASK}/versions/{number}/"
        manifest = json.loads(urllib.request.urlopen(base + "model.json", timeout=10).read())["weightsManifest"]
        data = b"".join(urllib.request.urlopen(base + p, timeout=10).read() for g in manifest for p in g["paths"])
        return np.frombuffer(data, dtype="<f4")

    def stop(self) -> None:
        try:
            self.platform.stop()
        finally:
            if self.redis is not None:
                self.redis.stop()


class Gate:
    """Holds the named participants before their update of one round until the test releases them."""

    def __init__(self, round_number: int, hold: set[str], vanish: set[str]):
        self.round_number, self.hold, self.vanish = round_number, hold, vanish
        self.arrived: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._open: asyncio.Event | None = None

    async def __call__(self, participant: NumpyParticipant, round_number: int) -> None:
        if round_number != self.round_number or participant.name not in self.hold:
            return
        self.arrived.add(participant.name)
        await self._open.wait()
        if participant.name in self.vanish:
            await participant.vanish()

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self._open.set)


@dataclass
class Outcome:
    fault: str
    rounds_wanted: int
    fault_at: float = 0.0
    new_versions: list[float] = field(default_factory=list)  # monotonic times the watched task gained a version
    versions: list[tuple] = field(default_factory=list)
    rounds: list[tuple] = field(default_factory=list)
    participants: list[NumpyParticipant] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    final_vector: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def recovery_seconds(self) -> float | None:
        after = [t for t in self.new_versions if t >= self.fault_at]
        return after[0] - self.fault_at if after else None

    @property
    def survivors(self) -> list[NumpyParticipant]:
        return [p for p in self.participants if not p.vanished]

    @property
    def duplicates(self) -> int:
        """Versions made from a round (or a parent) that already made one."""
        made = [r for _, r, _ in self.versions if r is not None]
        parents = [p for _, _, p in self.versions if p is not None]
        return (len(made) - len(set(made))) + (len(parents) - len(set(parents)))

    @property
    def versions_lost(self) -> int:
        """Rounds that ended without a version (failed, or never finished) plus versions short of the goal."""
        failed = sum(1 for _, status, _ in self.rounds if status == "failed")
        return failed + max(0, self.rounds_wanted + 1 - len(self.versions))

    def problems(self) -> list[str]:
        """What the checks find wrong: empty when the platform survived the fault."""
        found = list(self.errors)
        numbers = [n for n, _, _ in self.versions]
        if numbers != list(range(1, self.rounds_wanted + 2)):
            found.append(f"versions {numbers}, expected 1..{self.rounds_wanted + 1}")
        if self.duplicates:
            found.append(f"{self.duplicates} duplicate version(s): {self.versions}")
        stuck = [(n, s) for n, s, _ in self.rounds if s == "aggregating"]
        open_rounds = [n for n, s, _ in self.rounds if s == "open"]
        if stuck or len(open_rounds) > 1 or (open_rounds and open_rounds[0] != max(n for n, _, _ in self.rounds)):
            found.append(f"rounds left open or aggregating: {self.rounds}")
        for p in self.survivors:
            if p.version != self.rounds_wanted + 1:
                found.append(f"{p.name} ended at version {p.version}")
            elif self.final_vector is not None and not np.array_equal(p.vector, self.final_vector):
                found.append(f"{p.name}'s weights differ from version {p.version}")
        return found


def run_with_fault(stack: Stack, fault: str, inject: Callable[[Stack, Gate], float], *, hold: set[str],
                   vanish: frozenset[str] = frozenset(), participants: int = 4, rounds: int = 3,
                   fault_round: int = 2, watch_task: str = TASK, time_limit: float = 120,
                   settle: Callable[[Stack], None] | None = None) -> Outcome:
    """Run ``rounds`` rounds with ``participants`` (alternately on the two daphnes) and ``inject`` in ``fault_round``.

    ``inject(stack, gate)`` is called once the participants not held have their update of ``fault_round`` stored
    and the held ones wait at the gate; it injects the fault, releases the gate (when it sees fit) and returns
    the ``time.monotonic()`` of the fault. ``settle(stack)``, once the participants are done, waits for what else
    the fault concerns."""
    outcome = Outcome(fault, rounds)
    gate = Gate(fault_round, hold, set(vanish))
    urls = [d.url for d in stack.daphnes]
    outcome.participants = [
        NumpyParticipant(f"p{i}", [urls[i % 2], urls[(i + 1) % 2]], TASK, *generated_data(120 + 40 * i, seed=i),
                         target_version=rounds + 1, before_submit=gate) for i in range(participants)]
    stop_watching = threading.Event()
    watcher = threading.Thread(target=_watch_versions, args=(stack, watch_task, outcome, stop_watching), daemon=True)
    watcher.start()
    deadline = time.monotonic() + time_limit

    async def main() -> None:
        gate.loop, gate._open = asyncio.get_running_loop(), asyncio.Event()
        everyone = outcome.participants
        survivors = [asyncio.create_task(p.run(deadline=deadline)) for p in everyone if p.name not in vanish]
        gone = [asyncio.create_task(p.run(deadline=deadline)) for p in everyone if p.name in vanish]
        for result in await asyncio.gather(*survivors, return_exceptions=True):
            if isinstance(result, BaseException):
                outcome.errors.append(f"{type(result).__name__}: {result}")
        for task in gone:
            task.cancel()
        await asyncio.gather(*gone, return_exceptions=True)
        for p in outcome.participants:
            await p.abort()

    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    try:
        others = participants - len(hold)
        wait_for(lambda: gate.arrived == hold and stack.contributions(fault_round) >= others, timeout=time_limit / 2,
                 what=f"round {fault_round}: {others} updates stored and {sorted(hold)} held")
        outcome.fault_at = inject(stack, gate)
    except BaseException:
        gate.release()
        raise
    finally:
        runner.join(timeout=max(1.0, deadline - time.monotonic() + 15))
        if settle is not None:
            try:
                settle(stack)
            except AssertionError as exc:
                outcome.errors.append(str(exc))
        stop_watching.set()
        watcher.join(timeout=5)
    if runner.is_alive():
        outcome.errors.append("the participants did not finish")
    outcome.versions, outcome.rounds = stack.versions(), stack.rounds()
    if outcome.versions:
        outcome.final_vector = stack.version_vector(outcome.versions[-1][0])
    return outcome


def _watch_versions(stack: Stack, task_id: str, outcome: Outcome, stop: threading.Event) -> None:
    """Note the time each new version of ``task_id`` appears, polling until ``stop`` (and once more after it)."""
    seen = None
    while True:
        stopping = stop.is_set()
        try:
            count = stack.db.query("SELECT count(*) FROM tasks_modelversion WHERE task_id = %s", (task_id,))[0][0]
        except Exception:  # noqa: BLE001 - the database is not what these faults break; poll again
            count = seen
        if seen is not None and count is not None and count > seen:
            outcome.new_versions.append(time.monotonic())
        seen = count if count is not None else seen
        if stopping:
            return
        stop.wait(0.05)


# --- The faults: each injects one, releases the held participants and returns the moment of the fault ----------------

def kill_daphne(stack: Stack, gate: Gate) -> float:
    """kill -9 the daphne that p0 and p2 use (p2 has sent, p0 is about to): both go over to the other one."""
    fault_at = time.monotonic()
    stack.daphnes[0].kill()
    gate.release()
    return fault_at


def kill_aggregation_worker(stack: Stack, gate: Gate) -> float:
    """kill -9 the aggregation worker (its whole process group) while it aggregates the round, then start another.

    New versions are held back (a lock on the versions table that lets reads through) so the worker is caught
    inside ``aggregate_round``; a worker that starts re-delivers what the dead one took once the broker's
    visibility timeout has passed."""
    with stack.db.lock_writes("tasks_modelversion"):
        gate.release()
        wait_for(lambda: stack.db.waiting_for_locks(INSERTING_VERSION) >= 1, timeout=30,
                 what="the worker to wait for the versions table inside aggregate_round")
        fault_at = time.monotonic()
        stack.worker.kill()
    _start_after_visibility_timeout(stack)
    stack.worker = stack.platform.worker("aggregation")
    return fault_at


def restart_redis(stack: Stack, gate: Gate) -> float:
    """kill -9 the (private, unpersisted) Redis mid-round and start it again on the same port, empty."""
    fault_at = time.monotonic()
    stack.redis.kill()
    stack.redis.start()
    gate.release()
    return fault_at


def kill_conversion_worker(stack: Stack, gate: Gate) -> float:
    """Queue the conversion of ``fault-convert``; kill -9 its worker once the job runs; start another."""
    conversion = stack.platform.worker("conversion")
    stack.platform.manage("load_default_tasks", "--only", "fault-convert", "--no-wait")
    wait_for(lambda: stack.db.query("SELECT status FROM tasks_conversionjob j WHERE j.task_id = 'fault-convert'")
             == [("running",)], timeout=60, what="the conversion job to run")
    fault_at = time.monotonic()
    conversion.kill()
    gate.release()
    _start_after_visibility_timeout(stack)
    stack.platform.worker("conversion")
    return fault_at


def kill_aggregation_pool_process(stack: Stack, gate: Gate) -> float:
    """kill -9 only the prefork pool process running ``aggregate_round``; the worker itself stays up.

    Celery then acknowledges the late-acknowledged task as failed (WorkerLostError) unless
    ``task_reject_on_worker_lost`` is set: the round stays aggregating until something runs it again."""
    with stack.db.lock_writes("tasks_modelversion"):
        gate.release()
        wait_for(lambda: stack.db.waiting_for_locks(INSERTING_VERSION) >= 1, timeout=30,
                 what="the worker to wait for the versions table inside aggregate_round")
        (child,) = _children(stack.worker.proc.pid)
        fault_at = time.monotonic()
        os.kill(child, signal.SIGKILL)
    return fault_at


def restart_redis_before_aggregation(stack: Stack, gate: Gate) -> float:
    """With no aggregation worker up, the round closes and its aggregation waits in Redis; Redis restarts empty
    (the queued aggregation and the round's timers are gone); a worker starts."""
    stack.worker.stop()
    gate.release()
    wait_for(lambda: "aggregation.tasks.aggregate_round" in pending_tasks(stack.platform.redis_url), timeout=30,
             what="the round's aggregation to wait in Redis")
    fault_at = time.monotonic()
    stack.redis.kill()
    stack.redis.start()
    stack.worker = stack.platform.worker("aggregation")
    return fault_at


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def conversion_done(stack: Stack) -> None:
    wait_for(lambda: stack.db.query("SELECT status FROM tasks_conversionjob WHERE task_id = 'fault-convert'")
             == [("done",)], timeout=120, what="the conversion job to be done")


def vanish(stack: Stack, gate: Gate) -> float:
    """p3 stops reading and writing without closing its socket, before sending its update."""
    fault_at = time.monotonic()
    gate.release()
    return fault_at


def _start_after_visibility_timeout(stack: Stack) -> None:
    """A worker that starts restores the messages taken and never acknowledged for longer than the visibility
    timeout: wait until every such message of the dead worker is that old."""
    wait_for(lambda: all(age > VISIBILITY_TIMEOUT for age in unacked_ages(stack.platform.redis_url)),
             timeout=VISIBILITY_TIMEOUT + 30, what="the dead worker's messages to pass the visibility timeout")


@dataclass(frozen=True)
class Case:
    fault: str
    inject: Callable[[Stack, Gate], float]
    hold: frozenset[str]
    vanish: frozenset[str] = frozenset()
    private_redis: bool = False
    watch_task: str = TASK
    settle: Callable[[Stack], None] | None = None
    time_limit: float = 120


CASES = {
    "daphne_killed": Case("kill -9 of the daphne holding half the participants", kill_daphne, frozenset({"p0", "p1"})),
    "aggregation_worker_killed": Case("kill -9 of the aggregation worker while it aggregates",
                                      kill_aggregation_worker, frozenset({"p0", "p1", "p2", "p3"})),
    "redis_restarted": Case("Redis restarted (empty) mid-round", restart_redis, frozenset({"p1", "p3"}),
                            private_redis=True),
    "conversion_worker_killed": Case("kill -9 of a conversion worker mid-job", kill_conversion_worker,
                                     frozenset({"p1", "p3"}), watch_task="fault-convert", settle=conversion_done),
    "aggregation_pool_process_killed": Case("kill -9 of the worker's pool process while it aggregates",
                                            kill_aggregation_pool_process, frozenset({"p0", "p1", "p2", "p3"}),
                                            time_limit=40),
    "redis_restarted_before_aggregation": Case("Redis restarted (empty) with the aggregation queued",
                                               restart_redis_before_aggregation, frozenset({"p1", "p3"}),
                                               private_redis=True, time_limit=40),
    "participant_vanished": Case("a participant vanishes without closing its socket", vanish, frozenset({"p3"}),
                                 vanish=frozenset({"p3"})),
}


def run_case(name: str, root: Path, template: LivePlatform, **options) -> tuple[Outcome, Stack]:
    """Start a stack, run the case, stop the stack. Returns the outcome and the (stopped) stack for inspection."""
    case = CASES[name]
    stack = Stack(root, template, private_redis=case.private_redis)
    try:
        outcome = run_with_fault(stack, case.fault, case.inject, hold=set(case.hold), vanish=case.vanish,
                                 watch_task=case.watch_task, settle=case.settle,
                                 **{"time_limit": case.time_limit, **options})
        outcome.extra = {"conversion_jobs": stack.db.query(
            "SELECT status FROM tasks_conversionjob WHERE task_id = 'fault-convert'"),
            "converted_versions": stack.versions("fault-convert")}
    finally:
        stack.stop()
    return outcome, stack
