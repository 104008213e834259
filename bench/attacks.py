"""Benchmark: aggregators under Byzantine attack, with ``manage.py simulate`` on the predefined titanic task.

Starts an embedded platform (a SQLite file in a temporary folder, one daphne), loads ``titanic``, then for
each aggregator and attack resets the task to its initial version with that aggregator and runs::

    manage.py simulate --task titanic --participants 10 --rounds R --data train.csv --test-data test.csv \\
        --byzantine 2 --attack ATTACK --seed 0

(in this process, through ``call_command``, so TensorFlow is imported once). The data are the project's
generated Titanic-like passenger lists (``tasks.sample_data.titanic_like_csv``): 600 rows to train on
(seed 1), 400 held out (seed 2). Prints a Markdown table of the held-out accuracy after R rounds.

Run from the project root: ``.venv/bin/python bench/attacks.py`` (``--rounds 5``).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGGREGATORS = {"mean": {}, "median": {}, "trimmed_mean": {"beta": 0.2}, "krum": {"f": 2}}
ATTACKS = ["none", "noise", "sign_flip", "scale", "alie", "ipm"]


def use_aggregator(task_id: str, aggregator: str, params: dict) -> None:
    """Start ``task_id`` again from its first version with ``aggregator``: the open round goes, version 1 is current."""
    from aggregation.models import Participant, Round
    from tasks.models import Task
    from tasks.versions import set_current_version

    # The previous run's participants have all left; a consumer that failed sending to a closing socket may not
    # have marked its participant gone, and the next rounds would wait for it until their deadline.
    Participant.objects.filter(task_id=task_id).update(connected=False)
    Round.objects.filter(task_id=task_id, status=Round.Status.OPEN, contributions__isnull=True).delete()
    Task.objects.filter(pk=task_id).update(aggregator=aggregator, aggregator_params=params)
    set_current_version(Task.objects.get(pk=task_id), 1)


def simulate(server: str, train: Path, test: Path, *, rounds: int, attack: str, byzantine: int = 2,
             participants: int = 10, csv: Path | None = None, seed: int = 0) -> str:
    """Run ``manage.py simulate`` in this process; returns its output."""
    from django.core.management import call_command

    args = ["--task", "titanic", "--participants", str(participants), "--rounds", str(rounds), "--server", server,
            "--data", str(train), "--test-data", str(test), "--seed", str(seed)]
    if attack != "none":
        args += ["--byzantine", str(byzantine), "--attack", attack]
    if csv:
        args += ["--csv", str(csv)]
    out = io.StringIO()
    call_command("simulate", *args, stdout=out)
    return out.getvalue()


def final_test_accuracy(output: str) -> float:
    line = [line for line in output.splitlines() if line.startswith("round ")][-1]
    return float(line.rsplit("accuracy ", 1)[1].rstrip("%")) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the platform's processes on the way out
    from tests.live_platform import LivePlatform

    with tempfile.TemporaryDirectory(prefix="disco-attacks-") as tmp:
        live = LivePlatform(Path(tmp), redis_url="")
        try:
            os.environ.update(DATABASE_URL=live.db.url, MEDIA_ROOT=live.env["MEDIA_ROOT"],
                              DJANGO_SETTINGS_MODULE="disco_site.settings")
            os.environ.pop("REDIS_URL", None)
            live.manage("migrate", "--noinput")
            live.manage("load_default_tasks", "--only", "titanic")
            server = live.daphne().url
            import django

            django.setup()
            from tasks.sample_data import titanic_like_csv

            train, test = Path(tmp) / "train.csv", Path(tmp) / "test.csv"
            train.write_text(titanic_like_csv(600, seed=1))
            test.write_text(titanic_like_csv(400, seed=2))
            table: dict[str, dict[str, float]] = {}
            for aggregator, params in AGGREGATORS.items():
                for attack in ATTACKS:
                    use_aggregator("titanic", aggregator, params)
                    accuracy = final_test_accuracy(simulate(server, train, test, rounds=options.rounds,
                                                            attack=attack))
                    table.setdefault(aggregator, {})[attack] = accuracy
                    print(f"{aggregator} {attack}: {100 * accuracy:.1f}%", file=sys.stderr, flush=True)
        finally:
            live.stop()
    print("| aggregator | " + " | ".join(ATTACKS) + " |")
    print("| --- |" + " ---: |" * len(ATTACKS))
    for aggregator, row in table.items():
        label = aggregator + "".join(f" ({k}={v})" for k, v in AGGREGATORS[aggregator].items())
        print(f"| {label} | " + " | ".join(f"{100 * row[a]:.1f}%" for a in ATTACKS) + " |")


if __name__ == "__main__":
    main()
