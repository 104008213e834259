"""``manage.py simulate``: N Python participants train a task together against a live server.

Federated tasks use ``FederatedClient``; decentralized ones ``DecentralizedClient``, which
exchanges with its peers through the server's relay.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from aggregation.local_data import DataError, load_local_data, sample_data, split
from aggregation.participant import FederatedClient, ParticipantError
from aggregation.peer import DecentralizedClient
from aggregation.remote import add_recovery_arguments, recovery_from_options


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
        parser.add_argument("--token", default="", help="For tasks not open to anyone: an API token (signed-in "
                                                        "tasks) or the invitation's secret (invited tasks), used "
                                                        "by every simulated participant.")
        add_recovery_arguments(parser)

    def handle(self, *args, task: str, participants: int, rounds: int, server: str, data: Path | None,
               non_iid: bool, seed: int, token: str = "", **options) -> None:
        quiet = lambda _message: None  # noqa: E731
        started = time.monotonic()
        try:
            info = FederatedClient(server, task, log=quiet, token=token).fetch_task()
            scheme = info["trainingInformation"]["scheme"]
            if scheme not in ("federated", "decentralized"):
                raise CommandError(f"Task {task!r} trains alone ({scheme!r}): there is nothing to simulate.")
            client_class = DecentralizedClient if scheme == "decentralized" else FederatedClient
            recovery = recovery_from_options(options)
            clients = [client_class(server, task, log=quiet, token=token, recovery=recovery)
                       for _ in range(participants)]
            x, y = load_local_data(data, info) if data else sample_data(info)
            parts = split(x, y, participants, non_iid=non_iid, seed=seed)
            per_round: dict[int, list] = {}

            def collect(result) -> None:
                per_round.setdefault(result.round, []).append(result)
                if len(per_round[result.round]) == participants:
                    self._report(per_round[result.round])

            self.stdout.write(f"Simulating {participants} {scheme} participants on {task} ({len(y)} samples, "
                              f"{'non-IID' if non_iid else 'IID'}) for {rounds} rounds at {server}")
            results = asyncio.run(self._run(clients, parts, rounds, collect))
        except (DataError, ParticipantError, OSError, KeyError) as exc:
            raise CommandError(str(exc)) from exc
        last = [r[-1] for r in results]
        first = per_round[min(per_round)]
        where = f"final version {last[0].version}" if hasattr(last[0], "version") else \
            f"{len(last[0].peers)} peers in the last round"
        self.stdout.write(self.style.SUCCESS(
            f"summary: {participants} participants x {len(per_round)} rounds on {task}: {where}, "
            f"accuracy {_mean_acc(first)} -> {_mean_acc(last)}, "
            f"loss {_mean(first, 'global_loss'):.4f} -> {_mean(last, 'global_loss'):.4f}, "
            f"{time.monotonic() - started:.1f} s"))

    async def _run(self, clients, parts, rounds, collect):
        return await asyncio.gather(*(c.run(x, y, rounds=rounds, on_round=collect)
                                      for c, (x, y) in zip(clients, parts, strict=True)))

    def _report(self, results) -> None:
        first = results[0]
        what = f"version {first.version}" if hasattr(first, "version") else \
            f"{len(first.peers)} peers over the {first.used}" + (f" ({first.fell_back})" if first.fell_back else "")
        self.stdout.write(f"round {first.round}: {what}, global loss "
                          f"{_mean(results, 'global_loss'):.4f}, accuracy {_mean_acc(results)} "
                          f"(mean over {len(results)} participants' data)")


def _mean(results, name: str) -> float:
    return float(np.mean([getattr(r, name) for r in results]))


def _mean_acc(results) -> str:
    values = [r.global_accuracy for r in results if r.global_accuracy is not None]
    return f"{100 * np.mean(values):.1f}%" if values else "n/a"
