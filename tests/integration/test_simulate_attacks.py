"""``manage.py simulate`` under attack on the predefined titanic task: the mean is hurt, a robust aggregator is not.

A live platform (daphne, plus the aggregation worker when the environment has Redis) on the environment's
database; 10 simulated participants of which 2 attack, for each attack, once with the mean and once with the
trimmed mean (beta 0.2: with 10 updates, the 2 largest and 2 smallest values of each coordinate are dropped).
Every run starts from the task's initial version. The command runs in this process (``call_command``), so
TensorFlow is imported once.

Bands (held-out figures of the version after ROUNDS rounds; 400 generated passengers, always "died" scores
0.607): honest training reaches 0.73 with the mean (README's table); the trimmed mean under every attack stays
at or above ROBUST_FLOOR (seen: 0.705 to 0.793 over two runs); the mean under every attack is hurt: its accuracy
at least HURT_BY below the trimmed mean's under the same attack, or its held-out loss at least LOSS_FACTOR times
the trimmed mean's (Gaussian noise leaves a model with random large weights whose accuracy varies around the
baseline, 0.67 in one run, but whose loss is far above an honest model's).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command

from tasks.sample_data import titanic_like_csv
from tests.live_platform import LivePlatform

ROUNDS = 3
# Each participant holds out the task's validationSplit (federated evaluation), so with the README table's 600
# passengers it trains on 48 rows: 3 rounds took the honest mean to 71 % only, and the trimmed mean under attack
# once to 0.62-0.66 (a CI run). With 1,200 the honest mean reaches 77 % in 3 rounds, in the same time.
TRAIN_ROWS = 1200
ROBUST_FLOOR = 0.67
HURT_BY = 0.08
LOSS_FACTOR = 3.0
# Where the default does not break the mean on this task (README's table: 3 rounds, defaults), a stronger attack:
# noise of 1000 times the update's RMS instead of 100; sign flips stretched 10 times instead of 4 (with 8 honest
# updates and 2 flipped at 4, the mean's step is about zero, so the mean merely stays put, at the initial
# version's accuracy, which one CI run found only 4.5 points below the trimmed mean's); ALIE's z_max (0.25 for
# 10 and 2) is built to hide inside the honest spread, not to move the mean (z = 10 moved it by 0.3 points; z = 100
# left it 4 to 11 points below the trimmed mean, its loss 1.3 times), so z = 1000, which the trimmed mean drops as
# the lowest values of every coordinate. Training is not seeded (tf_keras shuffles with its global generator), so
# every strength is chosen to hurt the mean by a wide margin, not just in the runs seen.
# Boosting the honest direction 10 times (scale's default) moved the mean by 2.8 honest steps a round, which one
# CI run found harmless (0.748 against the trimmed mean's 0.755): 100 times overshoots for sure.
STRENGTH = {"noise": 1000.0, "sign_flip": 10.0, "scale": 100.0, "alie": 1000.0}
ATTACKS = ["noise", "sign_flip", "scale", "alie", "ipm"]

RESET = """
from aggregation.models import Participant, Round
from tasks.models import Task
# The previous run's participants have all left; a consumer that failed sending to a closing socket may not
# have marked its participant gone, and the next rounds would wait for it until their deadline.
Participant.objects.filter(task_id="titanic").update(connected=False)
from tasks.versions import set_current_version
Round.objects.filter(task_id="titanic", status=Round.Status.OPEN, contributions__isnull=True).delete()
Task.objects.filter(pk="titanic").update(aggregator={aggregator!r}, aggregator_params={params!r})
set_current_version(Task.objects.get(pk="titanic"), 1)
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    live = LivePlatform.selected(root, redis_db=5)
    try:
        live.manage("migrate", "--noinput")
        live.start_workers()
        live.manage("load_default_tasks", "--only", "titanic")
        live.daphne()
        train, test = root / "train.csv", root / "test.csv"
        train.write_text(titanic_like_csv(TRAIN_ROWS, seed=1))
        test.write_text(titanic_like_csv(400, seed=2))
        yield live, train, test
    finally:
        live.stop()


def held_out(platform, aggregator: str, params: dict, attack: str) -> tuple[float, float]:
    """(loss, accuracy) on the held-out passengers of the version the last round produced."""
    live, train, test = platform
    live.manage("shell", "-c", RESET.format(aggregator=aggregator, params=params))
    args = ["--task", "titanic", "--participants", "10", "--rounds", str(ROUNDS), "--server",
            live.processes[-1].url, "--data", str(train), "--test-data", str(test), "--byzantine", "2",
            "--attack", attack, "--seed", "0"]
    if attack in STRENGTH:
        args += ["--attack-strength", str(STRENGTH[attack])]
    out = io.StringIO()
    with ThreadPoolExecutor(max_workers=1) as pool:  # asyncio.run on a thread of its own
        pool.submit(call_command, "simulate", *args, stdout=out).result()
    rounds = [line for line in out.getvalue().splitlines() if line.startswith("round ")]
    assert len(rounds) == ROUNDS, out.getvalue()
    assert all("held-out loss" in line for line in rounds), out.getvalue()
    held = rounds[-1].split("; held-out loss ", 1)[1]
    loss, accuracy = held.split(", accuracy ")
    return float(loss), float(accuracy.rstrip("%")) / 100


def test_two_attackers_in_ten_hurt_the_mean_and_not_the_trimmed_mean(platform):
    results = {}
    for attack in ATTACKS:
        robust = held_out(platform, "trimmed_mean", {"beta": 0.2}, attack)
        mean = held_out(platform, "mean", {}, attack)
        results[attack] = (mean, robust)
    report = "; ".join(f"{a}: mean loss {m[0]:.3f} acc {m[1]:.3f}, trimmed loss {r[0]:.3f} acc {r[1]:.3f}"
                       for a, (m, r) in results.items())
    for attack, ((mean_loss, mean_acc), (robust_loss, robust_acc)) in results.items():
        assert robust_acc >= ROBUST_FLOOR, f"{attack}: the trimmed mean fell below {ROBUST_FLOOR} ({report})"
        assert mean_acc <= robust_acc - HURT_BY or mean_loss >= LOSS_FACTOR * robust_loss, \
            f"{attack}: the mean was not hurt ({report})"
