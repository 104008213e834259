"""``manage.py simulate``: N Python participants train a federated task together against a live server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from aggregation.local_data import DataError, load_local_data, sample_data, split
from aggregation.participant import FederatedClient, ParticipantError


class Command(BaseCommand):
    help = ("Run N participants on a data set split among them (PATH, or the task's generated sample data) "
            "and print each round's loss and accuracy.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True)
        parser.add_argument("--participants", type=int, default=3)
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--server", default="http://127.0.0.1:8000")
        parser.add_argument("--data", type=Path, default=None)
        parser.add_argument("--non-iid", action="store_true", help="Give each participant a label-sorted slice.")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, task: str, participants: int, rounds: int, server: str, data: Path | None,
               non_iid: bool, seed: int, **options) -> None:
        quiet = lambda _message: None  # noqa: E731
        clients = [FederatedClient(server, task, log=quiet) for _ in range(participants)]
        started = time.monotonic()
        try:
            info = clients[0].fetch_task()
            x, y = load_local_data(data, info) if data else sample_data(info)
            parts = split(x, y, participants, non_iid=non_iid, seed=seed)
            per_round: dict[int, list] = {}

            def collect(result) -> None:
                per_round.setdefault(result.round, []).append(result)
                if len(per_round[result.round]) == participants:
                    self._report(per_round[result.round])

            self.stdout.write(f"Simulating {participants} participants on {task} ({len(y)} samples, "
                              f"{'non-IID' if non_iid else 'IID'}) for {rounds} rounds at {server}")
            results = asyncio.run(self._run(clients, parts, rounds, collect))
        except (DataError, ParticipantError, OSError, KeyError) as exc:
            raise CommandError(str(exc)) from exc
        last = [r[-1] for r in results]
        first = per_round[min(per_round)]
        self.stdout.write(self.style.SUCCESS(
            f"summary: {participants} participants x {len(per_round)} rounds on {task}: final version "
            f"{last[0].version}, accuracy {_mean_acc(first)} -> {_mean_acc(last)}, "
            f"loss {_mean(first, 'global_loss'):.4f} -> {_mean(last, 'global_loss'):.4f}, "
            f"{time.monotonic() - started:.1f} s"))

    async def _run(self, clients, parts, rounds, collect):
        return await asyncio.gather(*(c.run(x, y, rounds=rounds, on_round=collect)
                                      for c, (x, y) in zip(clients, parts, strict=True)))

    def _report(self, results) -> None:
        self.stdout.write(f"round {results[0].round}: version {results[0].version}, global loss "
                          f"{_mean(results, 'global_loss'):.4f}, accuracy {_mean_acc(results)} "
                          f"(mean over {len(results)} participants' data)")


def _mean(results, name: str) -> float:
    return float(np.mean([getattr(r, name) for r in results]))


def _mean_acc(results) -> str:
    values = [r.global_accuracy for r in results if r.global_accuracy is not None]
    return f"{100 * np.mean(values):.1f}%" if values else "n/a"
