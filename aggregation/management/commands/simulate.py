"""``manage.py simulate``: N Python participants train a task together against a live server.

The participants are the Python client's (``disco_client.keras``): federated tasks use
``KerasFederatedClient``; decentralized ones ``KerasDecentralizedClient``, which exchanges with its
peers through the server's relay.

For research: ``--partition`` splits the data (iid, McMahan's label shards, a Dirichlet label
split; ``disco_client.local_data.partition_indices``), ``--test-data`` scores every version the rounds
produce on a held-out file, ``--byzantine K --attack NAME`` makes K participants lie
(``aggregation.attacks``; they are ordinary participants whose update is replaced before it is sent,
so the server's checks apply to them), ``--csv`` writes one row per round.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from aggregation.attacks import ATTACKS, NEEDS_HONEST, attack
from disco_client.keras import KerasDecentralizedClient, KerasFederatedClient, encode_targets
from disco_client.local_data import PARTITIONS, DataError, data_from_files, load_local_data, parse_partition, split
from disco_client.remote import ParticipantError, add_recovery_arguments, recovery_from_options

CSV_FIELDS = ["round", "version", "participants", "attackers", "train_loss", "train_accuracy", "test_loss",
              "test_accuracy", "seconds"]


class Command(BaseCommand):
    help = ("Run N participants on a data set split among them (PATH, or the task's generated sample data) "
            "and print each round's loss and accuracy, on their data and on held-out data (--test-data).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True)
        parser.add_argument("--participants", type=int, default=3)
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--server", default="http://127.0.0.1:8000")
        parser.add_argument("--data", type=Path, default=None)
        parser.add_argument("--partition", default="iid",
                            help=f"How the data is split among the participants: {PARTITIONS} (default iid).")
        parser.add_argument("--non-iid", action="store_true",
                            help="The old option: one label-sorted slice per participant, i.e. --partition shards:1.")
        parser.add_argument("--test-data", type=Path, default=None,
                            help="Held-out data (same formats as --data): every version the rounds produce is "
                                 "scored on it.")
        parser.add_argument("--byzantine", type=int, default=0,
                            help="How many of the participants attack (send --attack instead of their update).")
        parser.add_argument("--attack", choices=list(ATTACKS), default=None)
        parser.add_argument("--attack-strength", type=float, default=None,
                            help="The attack's knob: noise/scale/sign_flip factor, ALIE's z, IPM's epsilon "
                                 "(default: see aggregation/attacks.py).")
        parser.add_argument("--csv", type=Path, default=None, help="Write one row per round to this CSV file.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--token", default="", help="For tasks not open to anyone: an API token (signed-in "
                                                        "tasks) or the invitation's secret (invited tasks), used "
                                                        "by every simulated participant.")
        add_recovery_arguments(parser)

    def handle(self, *args, task: str, participants: int, rounds: int, server: str, data: Path | None,
               partition: str = "iid", non_iid: bool = False, test_data: Path | None = None, byzantine: int = 0,
               attack: str | None = None, attack_strength: float | None = None, csv: Path | None = None,
               seed: int = 0, token: str = "", **options) -> None:
        quiet = lambda _message: None  # noqa: E731
        started = time.monotonic()
        if non_iid:
            partition = "shards:1"
        try:
            parse_partition(partition)
        except DataError as exc:
            raise CommandError(str(exc)) from exc
        if byzantine and not attack:
            raise CommandError("--byzantine needs --attack (one of " + ", ".join(ATTACKS) + ").")
        if not 0 <= byzantine < participants:
            raise CommandError(f"--byzantine must leave at least one honest participant: 0 <= K < {participants}.")
        report: Report | None = None
        try:
            probe = KerasFederatedClient(server, task, log=quiet, token=token)
            info = probe.fetch_task()
            training = info["trainingInformation"]
            scheme = training["scheme"]
            if scheme not in ("federated", "decentralized"):
                raise CommandError(f"Task {task!r} trains alone ({scheme!r}): there is nothing to simulate.")
            if scheme == "decentralized" and (byzantine or test_data):
                raise CommandError("--byzantine and --test-data are for federated tasks: decentralized peers each "
                                   "keep their own model and no version is produced to score or attack.")
            client_class = KerasDecentralizedClient if scheme == "decentralized" else KerasFederatedClient
            recovery = recovery_from_options(options)
            clients = [client_class(server, task, log=quiet, token=token, recovery=recovery)
                       for _ in range(participants)]
            x, y = load_local_data(data, info) if data else _sample_data(info)
            parts = split(x, y, participants, partition=partition, seed=seed)
            held_out = Evaluator(probe, load_local_data(test_data, info)) if test_data else None
            if byzantine:
                board = Board(attack, byzantine, participants - byzantine, attack_strength, seed,
                              wait=probe.limits()["accepted"])
                for i, client in enumerate(clients):
                    client.replace_update = board.attacker(i) if i < byzantine else board.honest
            report = Report(self, participants, byzantine, held_out, csv)
            attackers = f", {byzantine} attacking ({attack})" if byzantine else ""
            self.stdout.write(f"Simulating {participants} {scheme} participants on {task} ({len(y)} samples, "
                              f"{partition}{attackers}) for {rounds} rounds at {server}"
                              + (f"; held-out data: {test_data} ({held_out.size} samples)" if held_out else ""))
            _warm_up()
            results = asyncio.run(self._run(clients, parts, rounds, report.collect))
        except (DataError, ParticipantError, OSError, KeyError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if report is not None:
                report.close()
        last = [r[-1] for r in results]
        first = report.per_round[min(report.per_round)]
        where = f"final version {last[0].version}" if hasattr(last[0], "version") else \
            f"{len(last[0].peers)} peers in the last round"
        test = f", held-out accuracy {report.last_test}" if held_out else ""
        self.stdout.write(self.style.SUCCESS(
            f"summary: {participants} participants x {len(report.per_round)} rounds on {task}: {where}, "
            f"accuracy {_mean_acc(first)} -> {_mean_acc(last)}, "
            f"loss {_mean(first, 'global_loss'):.4f} -> {_mean(last, 'global_loss'):.4f}{test}, "
            f"{time.monotonic() - started:.1f} s"))

    async def _run(self, clients, parts, rounds, collect):
        return await asyncio.gather(*(c.run(x, y, rounds=rounds, on_round=collect)
                                      for c, (x, y) in zip(clients, parts, strict=True)))


class Evaluator:
    """Scores versions on held-out data: the task's model fetched as the clients fetch it, its loss and accuracy."""

    def __init__(self, client: KerasFederatedClient, data: tuple[np.ndarray, np.ndarray]):
        self.client, (self.x, y) = client, data
        self.size = len(y)
        self.model = None
        self._y = y

    def score(self, version: int) -> tuple[float, float | None]:
        if self.model is None:
            self.model = self.client.load_keras_model(version)
            loss = self.client.compile_for_training(self.model)  # as participants compile it: same loss
            self._y = encode_targets(self._y, loss, self.model.output_shape[-1])
        self.client.set_version_weights(self.model, version)
        scores = self.model.evaluate(self.x, self._y, verbose=0, return_dict=True, batch_size=256)
        accuracy = scores.get("accuracy")
        return float(scores["loss"]), (float(accuracy) if accuracy is not None else None)


@dataclass
class Board:
    """Where the simulated participants of one process meet: honest ones post their round's weights, attackers
    replace theirs (omniscient attackers, as in the papers: ALIE and IPM read the honest updates of the round)."""

    name: str
    attackers: int
    honest_count: int
    strength: float | None
    seed: int
    wait: float
    posted: dict[int, list[np.ndarray]] = field(default_factory=dict)
    _changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def honest(self, trained: np.ndarray, base: np.ndarray, round_number: int) -> np.ndarray:
        async with self._condition():
            self.posted.setdefault(round_number, []).append(trained)
            self._condition().notify_all()
        return trained

    def attacker(self, index: int):
        rng = np.random.default_rng([self.seed, index])

        async def replace(trained: np.ndarray, base: np.ndarray, round_number: int) -> np.ndarray:
            honest = None
            if self.name in NEEDS_HONEST:
                condition = self._condition()
                async with condition:
                    # every honest participant of the round, or as many as posted within the wait
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(condition.wait_for(
                            lambda: len(self.posted.get(round_number, [])) >= self.honest_count), self.wait)
                    honest = np.stack(self.posted.get(round_number) or [trained])
            return attack(self.name, trained, base, honest, strength=self.strength, rng=rng,
                          attackers=self.attackers)

        return replace


class Report:
    """Prints each round once every participant has reported it (and, with held-out data, the version's score);
    writes the CSV rows."""

    def __init__(self, command: BaseCommand, participants: int, attackers: int, held_out: Evaluator | None,
                 path: Path | None):
        self.command, self.participants, self.attackers, self.held_out = command, participants, attackers, held_out
        self.per_round: dict[int, list] = {}
        self.last_test = "n/a"
        self.since = time.monotonic()
        self.file = path.open("w", newline="") if path else None
        self.writer = csv.DictWriter(self.file, CSV_FIELDS) if self.file else None
        if self.writer:
            self.writer.writeheader()
            self.file.flush()

    def collect(self, result: Any) -> None:
        self.per_round.setdefault(result.round, []).append(result)
        if len(self.per_round[result.round]) == self.participants:
            self._report(self.per_round[result.round])

    def _report(self, results: list) -> None:
        first = results[0]
        seconds = time.monotonic() - self.since
        version = getattr(first, "version", None)
        what = f"version {version}" if version is not None else \
            f"{len(first.peers)} peers over the {first.used}" + (f" ({first.fell_back})" if first.fell_back else "")
        line = (f"round {first.round}: {what}, global loss {_mean(results, 'global_loss'):.4f}, accuracy "
                f"{_mean_acc(results)} (mean over {len(results)} participants' data)")
        sent = sum(getattr(r, "contributed", True) for r in results)
        if sent < len(results):  # participant sampling: the others were not invited to the round
            line += f"; {sent} of {len(results)} invited to send an update"
        test_loss = test_accuracy = None
        if self.held_out is not None and version is not None:
            test_loss, test_accuracy = self.held_out.score(version)
            self.last_test = _percent(test_accuracy)
            line += f"; held-out loss {test_loss:.4f}, accuracy {self.last_test}"
        self.command.stdout.write(line)
        if self.writer:
            accuracies = [r.global_accuracy for r in results if r.global_accuracy is not None]
            self.writer.writerow({
                "round": first.round, "version": "" if version is None else version,
                "participants": len(results), "attackers": self.attackers,
                "train_loss": f"{_mean(results, 'global_loss'):.6f}",
                "train_accuracy": f"{np.mean(accuracies):.6f}" if accuracies else "",
                "test_loss": "" if test_loss is None else f"{test_loss:.6f}",
                "test_accuracy": "" if test_accuracy is None else f"{test_accuracy:.6f}",
                "seconds": f"{seconds:.2f}"})
            self.file.flush()
        self.since = time.monotonic()

    def close(self) -> None:
        if self.file:
            self.file.close()


def _sample_data(task: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """The task's generated sample data (predefined tasks), as (x, y)."""
    from tasks.sample_data import sample_files

    return data_from_files(sample_files(task["id"]), task)


def _warm_up() -> None:
    """Import TensorFlow and the TF.js converter once before the participants start: their first model load
    would otherwise block the event loop while the others' WebSocket handshakes time out."""
    from disco_client.keras_env import tensorflowjs

    tensorflowjs()


def _mean(results, name: str) -> float:
    return float(np.mean([getattr(r, name) for r in results]))


def _percent(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "n/a"


def _mean_acc(results) -> str:
    values = [r.global_accuracy for r in results if r.global_accuracy is not None]
    return f"{100 * np.mean(values):.1f}%" if values else "n/a"
