"""Task providers: ML tasks defined in code.

A provider has two methods::

    class MyTask:
        def get_task(self) -> TaskSpec: ...
        def get_model(self) -> tf_keras.Model | TfjsModelFiles: ...

``get_model()`` returns either a compiled Keras 2 (``tf_keras``) model built in code, or
``TfjsModelFiles(path)`` pointing at an existing TF.js LayersModel ``model.json`` on disk
(its weight shards beside it; with no weights the model is randomly initialised).
TensorFlow is imported inside ``get_model()`` only, so listing providers stays cheap.

Predefined providers are the modules of ``tasks.default_tasks`` that define ``provider``;
they are discovered automatically. A self-hoster adds one without editing this package,
either with a settings entry (``DISCO_TASK_PROVIDERS = ["myproject.tasks.MyTask"]``, or the
environment variable of the same name, comma-separated) or with one call, e.g. in an
``AppConfig.ready()``::

    from tasks.providers import register_provider
    register_provider(MyTask())
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string

from .spec import TaskSpec


@dataclass(frozen=True)
class TfjsModelFiles:
    """An existing TF.js LayersModel on disk: ``model.json`` and, beside it, its weight shards."""

    model_json: Path


@runtime_checkable
class TaskProvider(Protocol):
    """Defines one ML task in code."""

    def get_task(self) -> TaskSpec:
        """The task's settings."""
        ...

    def get_model(self) -> Any:
        """A compiled ``tf_keras`` model, or ``TfjsModelFiles`` naming a model.json on disk."""
        ...


class ProviderError(ValueError):
    """A provider could not be loaded or does not follow the protocol."""


_registered: dict[str, TaskProvider] = {}


def register_provider(provider: TaskProvider) -> TaskProvider:
    """Register ``provider`` (an instance) under its task id; returns it, so it can decorate a factory call."""
    if not isinstance(provider, TaskProvider):
        raise ProviderError(f"{provider!r} is not a TaskProvider: it needs get_task() and get_model() methods.")
    task_id = provider.get_task().id
    _registered[task_id] = provider
    return provider


def unregister_provider(task_id: str) -> None:
    """Forget a provider registered with ``register_provider`` (tests use this)."""
    _registered.pop(task_id, None)


def _from_dotted_path(path: str) -> TaskProvider:
    try:
        obj = import_string(path)
    except ImportError as exc:
        raise ProviderError(f"Cannot import task provider {path!r} from DISCO_TASK_PROVIDERS: {exc}") from exc
    provider = obj() if isinstance(obj, type) else obj
    if not isinstance(provider, TaskProvider):
        raise ProviderError(f"{path!r} is not a TaskProvider: it needs get_task() and get_model() methods.")
    return provider


def default_providers() -> list[TaskProvider]:
    """The predefined providers: every module of ``tasks.default_tasks`` with a ``provider``."""
    from . import default_tasks

    found = []
    for info in sorted(pkgutil.iter_modules(default_tasks.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{default_tasks.__name__}.{info.name}")
        provider = getattr(module, "provider", None)
        if provider is not None:
            found.append(provider)
    return found


def all_providers() -> dict[str, TaskProvider]:
    """Every provider by task id: predefined, then settings entries, then registered ones (later wins)."""
    providers: dict[str, TaskProvider] = {}
    for provider in default_providers():
        providers[provider.get_task().id] = provider
    for path in settings.DISCO_TASK_PROVIDERS:
        provider = _from_dotted_path(path)
        providers[provider.get_task().id] = provider
    providers.update(_registered)
    return providers


def get_provider(task_id: str) -> TaskProvider:
    """The provider of ``task_id``; ``KeyError`` with a helpful message when there is none."""
    providers = all_providers()
    try:
        return providers[task_id]
    except KeyError:
        raise KeyError(f"No task provider defines {task_id!r}; known: {', '.join(sorted(providers))}.") from None
