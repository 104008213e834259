"""Fault injection on the real stack: how long the platform takes to recover from each fault, and what it loses.

Runs each case of ``tests/faults`` (PostgreSQL from DATABASE_URL, Redis from REDIS_URL, two daphnes, Celery
workers, four numpy participants, three rounds, the fault in round 2) once or ``--repeat`` times, and prints per
fault: the seconds from the fault to the next version (of the task the fault concerns; the median when repeated),
the versions lost, the duplicate versions, the participants' reconnections, and what the suite's checks found.
Figures only: nothing is asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python bench/faults.py [--repeat N] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disco_site.settings")


def main() -> None:
    import django

    django.setup()
    from tests.faults.scenario import CASES, make_template, run_case

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--case", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL server and REDIS_URL to a Redis database (as .ci/run does).")
    print(f"{'fault':<57} {'recover s':>9} {'lost':>4} {'dup':>3} {'reconn':>6}  checks")
    with tempfile.TemporaryDirectory(prefix="disco-bench-faults-") as tmp:
        template = make_template(Path(tmp) / "template")
        try:
            for name in args.case:
                times, lost, dups, reconnects, problems = [], 0, 0, 0, []
                for i in range(args.repeat):
                    outcome, _ = run_case(name, Path(tmp) / f"{name}-{i}", template)
                    if outcome.recovery_seconds is not None:
                        times.append(outcome.recovery_seconds)
                    lost += outcome.versions_lost
                    dups += outcome.duplicates
                    reconnects += sum(p.reconnects for p in outcome.participants)
                    problems += outcome.problems()
                recover = f"{statistics.median(times):9.2f}" if times else f"{'never':>9}"
                # The platform's state, not each participant's resulting time-out.
                state = [p for p in problems if p.startswith(("versions", "rounds", "the "))] or problems
                print(f"{CASES[name].fault:<57} {recover} {lost:>4} {dups:>3} {reconnects:>6}  "
                      f"{'ok' if not problems else '; '.join(state)[:200]}", flush=True)
        finally:
            template.stop()


if __name__ == "__main__":
    main()
