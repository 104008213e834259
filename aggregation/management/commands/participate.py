"""``manage.py participate``: join a federated task from this machine with local data.

The participant is the Python client (``disco_client.keras.KerasFederatedClient``): it trains the task's
TF.js model in ``tf_keras``; the command only reads the data and prints each round.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from disco_client.keras import KerasFederatedClient
from disco_client.local_data import DataError, load_local_data
from disco_client.participant import RoundResult
from disco_client.remote import ParticipantError, add_recovery_arguments, recovery_from_options


class Command(BaseCommand):
    help = "Train a federated task with local data (CSV, image folder or .npz) and the server's other participants."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True)
        parser.add_argument("--data", required=True, type=Path, help="CSV, image folder or .npz with x and y.")
        parser.add_argument("--server", default="http://127.0.0.1:8000")
        parser.add_argument("--rounds", type=int, default=None, help="Default: the task's epochs / roundDuration.")
        parser.add_argument("--token", default="", help="For tasks not open to anyone: your API token (signed-in "
                                                        "tasks) or the invitation's secret (invited tasks). Sent "
                                                        "in a header, never in a URL.")
        add_recovery_arguments(parser)

    def handle(self, *args, task: str, data: Path, server: str, rounds: int | None, token: str = "",
               **options) -> None:
        client = KerasFederatedClient(server, task, log=self.stdout.write, token=token,
                                 recovery=recovery_from_options(options))
        try:
            info = client.fetch_task()
            x, y = load_local_data(data, info)
            training = info["trainingInformation"]
            total = rounds or training["epochs"] // training["roundDuration"]
            self.stdout.write(f"Joining {task} at {server} with {len(y)} samples for {total} rounds…")
            results = asyncio.run(client.run(x, y, rounds=total, on_round=self._report))
        except (DataError, ParticipantError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        last = results[-1]
        self.stdout.write(self.style.SUCCESS(f"Done: version {last.version}, loss {last.global_loss:.4f}, "
                                             f"accuracy {_pct(last.global_accuracy)} on local data."))

    def _report(self, result: RoundResult) -> None:
        self.stdout.write(f"round {result.round}: train loss {result.train_loss:.4f}, global model loss "
                          f"{result.global_loss:.4f}, accuracy {_pct(result.global_accuracy)}, "
                          f"version {result.version}"
                          + ("" if result.contributed else " (not invited: trained locally, sent nothing)"))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
