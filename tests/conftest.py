"""Shared fixtures: an isolated media folder, in-process Celery, a tiny converted model, a valid task."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from disco_site.celery import app as celery_app

# Django's settings are loaded before this file: no heartbeat or sweeper thread in the test process
# (disco_site.asgi starts them at import). Tests call presence.heartbeat() and sweeper.sweep() themselves.
django_settings.DISCO_HEARTBEAT_SECONDS = 0
django_settings.DISCO_SWEEP_SECONDS = 0


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture(autouse=True)
def eager_celery():
    """Run Celery tasks in the test's process (tests of real workers start their own)."""
    # The app reads Django settings under the CELERY_ namespace, and a namespaced key wins
    # over the plain one: change the namespaced keys.
    conf = celery_app.conf
    before = conf.CELERY_TASK_ALWAYS_EAGER, conf.CELERY_TASK_EAGER_PROPAGATES
    conf.CELERY_TASK_ALWAYS_EAGER = conf.CELERY_TASK_EAGER_PROPAGATES = True
    assert conf.task_always_eager
    yield
    conf.CELERY_TASK_ALWAYS_EAGER, conf.CELERY_TASK_EAGER_PROPAGATES = before


@pytest.fixture(autouse=True)
def fresh_channel_layers():
    """A new channel layer per test: channels-redis binds its locks to the event loop that first used it,
    and pytest-asyncio gives every test a loop of its own."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def forget_process_state():
    """The consumers' per-process answer to "which round is open" (aggregation.consumers.OPEN_ROUNDS) and upload
    slots (aggregation.upload_slots.UPLOAD_SLOTS) and scheduled participant news (aggregation.broadcast) must not
    carry one test's rounds, sockets or event loop into the next."""
    from aggregation.broadcast import PARTICIPANT_NEWS
    from aggregation.consumers import OPEN_ROUNDS
    from aggregation.upload_slots import UPLOAD_SLOTS

    for state in (OPEN_ROUNDS, UPLOAD_SLOTS, PARTICIPANT_NEWS):
        state.clear()
    yield
    for state in (OPEN_ROUNDS, UPLOAD_SLOTS, PARTICIPANT_NEWS):
        state.clear()


def build_tiny_keras_model(seed: int = 0) -> Any:
    """A 4 -> 3 -> 2 dense classifier: enough to exercise conversion and storage."""
    from disco_client.keras_env import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.layers.Input(shape=(4,)),
        keras.layers.Dense(3, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="session")
def tiny_artifacts():
    """TF.js artifacts of the tiny model, converted once per test session."""
    from tasks.conversion import keras_model_to_tfjs

    return keras_model_to_tfjs(build_tiny_keras_model())


@pytest.fixture(scope="session")
def other_tiny_artifacts():
    from tasks.conversion import keras_model_to_tfjs

    return keras_model_to_tfjs(build_tiny_keras_model(seed=1))


TABULAR_TASK: dict[str, Any] = {
    "title": "Tiny tabular task",
    "summary_preview": "Predicts b from a.",
    "data_type": "tabular",
    "scheme": "federated",
    "input_columns": ["a", "b", "c", "d"],
    "output_columns": ["label"],
    "epochs": 4,
    "round_duration": 2,
    "batch_size": 8,
    "validation_split": 0.2,
    "min_participants": 2,
    "published": True,
}


@pytest.fixture
def make_task(db) -> Callable[..., Any]:
    from tasks.models import Task

    def make(task_id: str = "tiny", **overrides: Any) -> Task:
        task = Task(id=task_id, **{**TABULAR_TASK, **overrides})
        task.full_clean()
        task.save()
        return task

    return make


@pytest.fixture
def served(make_task, tiny_artifacts, other_tiny_artifacts):
    """A published task with two versions (1: initial, 2: from round 1), the second current."""
    from tasks.versions import create_version

    task = make_task("served")
    create_version(task, tiny_artifacts, origin="initial")
    create_version(task, other_tiny_artifacts, origin="round", round_number=1)
    task.refresh_from_db()
    return task


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its digest, to show that nothing changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def fresh_limit_counters(settings):
    """Every test starts with no counted log-ins, sign-ups or API calls: a private in-memory cache
    (never the shared Redis one, whose clear() would flush the database other processes use)."""
    from axes.handlers.proxy import AxesProxyHandler

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"disco-test-{uuid.uuid4().hex}"}}
    AxesProxyHandler.get_implementation(force=True)
    yield
    AxesProxyHandler.implementation = None
