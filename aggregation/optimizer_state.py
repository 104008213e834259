"""The server optimizer's step of a federated round, and its state between rounds.

``server_step`` runs in the aggregation worker: from the round's base model and aggregate it
takes the task's server optimizer step (registry: ``SERVER_OPTIMIZERS``), with the state the
last round left when that round produced the base version, and stores the new state as a file
in media storage. ``aggregation.rounds.finish`` then records that file on the task's
``ServerOptimizerState`` row (``record``), in the transaction that makes the round's version
current, or discards it (``discard``) when the round is superseded or already finished: the
state advances exactly when the model does. Arrays are stored with ``numpy.savez`` and read
with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import io
import secrets
from dataclasses import dataclass

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from tasks.models import ModelVersion, Task

from .aggregators.registry import NO_SERVER_OPTIMIZER, OptimizerState, server_optimizer
from .models import ServerOptimizerState


@dataclass(frozen=True)
class ServerStep:
    """A step taken but not yet recorded: the new state's file, and what to say about it."""

    optimizer: str
    blob: str
    steps: int
    note: str  # e.g. "then a FedAvgM server step (2 since its state was reset)"
    reset: str  # why the state started afresh, or ""


def read_arrays(path: str) -> OptimizerState:
    with default_storage.open(path, "rb") as fh, np.load(io.BytesIO(fh.read()), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def write_arrays(task_id: str, round_number: int, state: OptimizerState) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    path = f"optimizer_state/{task_id}/{round_number}-{secrets.token_hex(4)}.npz"
    return default_storage.save(path, ContentFile(buffer.getvalue()))


def discard(path: str) -> None:
    with contextlib.suppress(OSError):
        default_storage.delete(path)


def _label(name: str) -> str:
    return server_optimizer(name).label.split(" (")[0]


def previous_state(task: Task, base: ModelVersion) -> tuple[OptimizerState | None, int, str]:
    """(state, steps, why it was reset or "") with which a step from ``base`` starts."""
    row = ServerOptimizerState.objects.filter(task=task).first()
    if row is None:
        return None, 0, ""
    if row.optimizer != task.server_optimizer:
        return None, 0, (f"The server optimizer's state was reset: it was {_label(row.optimizer)}'s, the task now "
                         f"uses {_label(task.server_optimizer)}.")
    if row.version_id != base.pk:
        made = f"version {row.version.number}" if row.version is not None else "a version since deleted"
        return None, 0, (f"The server optimizer's state was reset: it was computed up to {made}, but this round "
                         f"started from version {base.number} (a rollback, an upload or a round without it).")
    return read_arrays(row.blob), row.steps, ""


def server_step(task: Task, base: ModelVersion, base_vector: np.ndarray, aggregate: np.ndarray,
                round_number: int) -> tuple[np.ndarray, ServerStep | None]:
    """The round's new model: ``aggregate`` itself (no server optimizer) or the optimizer's step from
    ``base_vector``, with the new state written to storage (not yet recorded)."""
    if task.server_optimizer == NO_SERVER_OPTIMIZER:
        return aggregate, None
    spec = server_optimizer(task.server_optimizer)
    state, steps, reset = previous_state(task, base)
    new, after = spec.step(base_vector, aggregate, state, **task.server_optimizer_params)
    blob = write_arrays(task.pk, round_number, after)
    steps += 1
    note = f"then a {_label(spec.name)} server step (step {steps} of its state)"
    return new, ServerStep(spec.name, blob, steps, note, reset)


def record(task: Task, step: ServerStep, version: ModelVersion) -> None:
    """Inside ``finish``'s transaction: ``step``'s state is the task's now (the old file goes after commit)."""
    old = ServerOptimizerState.objects.select_for_update().filter(task=task).first()
    ServerOptimizerState.objects.update_or_create(
        task=task, defaults={"optimizer": step.optimizer, "version": version, "steps": step.steps,
                             "blob": step.blob})
    if old is not None and old.blob != step.blob:
        old_blob = old.blob
        transaction.on_commit(lambda: discard(old_blob))
