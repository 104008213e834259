"""Run in a separate process (``manage.py shell -c``) by test_server_optimizer: one federated round of a
FedAvgM task per process, so the optimizer's state can only come from the database and media storage.

``setup(folder)`` creates the task from ``folder``'s model.json and shard; ``run_round(n)`` has two
participants send round ``n``'s updates (``updates(n, size)``), aggregates in this process and prints the
new version's weights and the stored momentum as JSON on the last line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASK_ID = "restart-opt"
LR, MOMENTUM = 0.5, 0.8
SAMPLES = (10, 30)


def updates(round_number: int, size: int) -> list[np.ndarray]:
    """The two participants' updates of a round: the same in the test and in the separate process."""
    rng = np.random.default_rng(round_number)
    return [rng.normal(size=size).astype(np.float32) for _ in SAMPLES]


def _eager() -> None:
    from disco_site.celery import app

    app.conf.CELERY_TASK_ALWAYS_EAGER = app.conf.CELERY_TASK_EAGER_PROPAGATES = True


def setup(folder: str) -> None:
    from tasks.models import Task
    from tasks.tfjs_format import parse_layers_model
    from tasks.versions import create_version
    from tests.conftest import TABULAR_TASK

    root = Path(folder)
    shards = {p.name: p.read_bytes() for p in root.glob("*.bin")}
    artifacts = parse_layers_model((root / "model.json").read_bytes(), shards)
    task = Task(id=TASK_ID, **{**TABULAR_TASK, "min_participants": 2, "max_contribution_share": 1.0,
                               "server_optimizer": "fedavgm",
                               "server_optimizer_params": {"lr": LR, "momentum": MOMENTUM}})
    task.full_clean()
    task.save()
    create_version(task, artifacts, origin="initial")


def run_round(number: int) -> None:
    from django.core.files.base import ContentFile

    from aggregation import rounds
    from aggregation.models import Participant, Round, ServerOptimizerState
    from aggregation.optimizer_state import read_arrays
    from aggregation.weights import version_vector
    from disco_client.codec import decode_weights, encode_weights
    from tasks.models import Task

    _eager()
    task = Task.objects.get(pk=TASK_ID)
    base = task.current_version
    specs = base.weight_specs
    sizes = [int(np.prod(s["shape"])) for s in specs]
    Participant.objects.filter(task=task).update(connected=False)  # the last process's participants are gone
    for samples, vector in zip(SAMPLES, updates(number, sum(sizes)), strict=True):
        tensors, start = [], 0
        for spec, size in zip(specs, sizes, strict=True):
            tensors.append((spec["name"], vector[start:start + size].reshape(spec["shape"])))
            start += size
        frame = encode_weights({"type": "update", "task": TASK_ID, "round": number, "baseVersion": base.number,
                                "samples": samples}, tensors)
        participant, _ = rounds.join(task)
        rnd = rounds.active_round(task)
        rounds.submit(participant, decode_weights(frame, expected=rounds.expected_specs(rnd)), ContentFile(frame))
    rnd = Round.objects.get(task=task, number=number)
    task.refresh_from_db()
    state = ServerOptimizerState.objects.get(task=task)
    print(json.dumps({"status": rnd.status, "message": rnd.message, "base": version_vector(base).tolist(),
                      "new": version_vector(task.current_version).tolist(), "steps": state.steps,
                      "momentum": read_arrays(state.blob)["momentum"].tolist()}))
