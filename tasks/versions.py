"""Writing and choosing model versions: the only code that stores model files.

A version's files go to a fresh folder with a generated name; the row is created
in a transaction after the files are written, and the files are removed again if
anything fails, so no half-written version is ever visible and nothing stored
before is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max

from .choices import Origin
from .models import ModelVersion, Task
from .tfjs_format import LayersModelArtifacts

log = logging.getLogger(__name__)


class VersionError(ValueError):
    """A version cannot be made current (wrong task, unknown number)."""


def write_files(storage_dir: str, files: dict[str, bytes]) -> list[str]:
    """Write ``files`` into the fresh folder ``storage_dir``; all or nothing. Returns the stored paths."""
    written: list[str] = []
    try:
        for name, data in files.items():
            path = f"{storage_dir}/{name}"
            saved = default_storage.save(path, ContentFile(data))
            written.append(saved)
            if saved != path:  # the storage renamed it: the folder was not fresh
                raise FileExistsError(f"{path} already exists in media storage.")
    except BaseException:
        delete_files(written)
        raise
    return written


def delete_files(paths: list[str]) -> None:
    """Best-effort removal of files a failed operation wrote."""
    for path in paths:
        try:
            default_storage.delete(path)
        except OSError:  # pragma: no cover - best effort cleanup
            log.exception("Could not remove %s after a failed write", path)


def create_version(task: Task, artifacts: LayersModelArtifacts, *, origin: str, parent: ModelVersion | None = None,
                   round_number: int | None = None, note: str = "", make_current: bool = True) -> ModelVersion:
    """Store ``artifacts`` as the task's next version (and, by default, its current one)."""
    if origin not in Origin.values:
        raise ValueError(f"Unknown origin {origin!r}.")
    files = {"model.json": artifacts.model_json_bytes(), **artifacts.shards}
    storage_dir = f"models/{task.pk}/{uuid.uuid4().hex}"
    written = write_files(storage_dir, files)
    try:
        with transaction.atomic():
            locked = Task.objects.select_for_update().get(pk=task.pk)
            number = (locked.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            version = ModelVersion.objects.create(
                task=locked,
                number=number,
                origin=origin,
                round_number=round_number,
                parent=parent if parent is not None else locked.current_version,
                sha256=artifacts.sha256(),
                storage_dir=storage_dir,
                files=[{"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                       for name, data in files.items()],
                weight_specs=[{"name": w.name, "shape": list(w.shape), "dtype": w.dtype} for w in artifacts.weights],
                parameter_count=artifacts.parameter_count,
                total_bytes=sum(len(d) for d in files.values()),
                note=note,
            )
            if make_current:
                locked.current_version = version
                locked.save(update_fields=["current_version", "updated_at"])
    except BaseException:
        delete_files(written)
        raise
    task.current_version = locked.current_version
    return version


def set_current_version(task: Task, number: int) -> ModelVersion:
    """Point ``task`` at its existing version ``number`` (a rollback, or a roll forward again)."""
    from .model_fit import version_fit_problems

    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        try:
            version = locked.versions.get(number=number)
        except ModelVersion.DoesNotExist:
            raise VersionError(f"Task {task.pk!r} has no version {number}.") from None
        problems = version_fit_problems(version, locked.spec_values())
        if problems:
            raise VersionError(f"Version {number} does not fit the task's current settings: {' '.join(problems)}")
        locked.current_version = version
        locked.save(update_fields=["current_version", "updated_at"])
    task.current_version = version
    return version


def protected_version_ids(task: Task) -> set[int]:
    """Versions that must never be deleted: the current one, the newest (numbers are never reused,
    and version URLs are cached as immutable), and the base of an open or aggregating round."""
    from aggregation.models import Round

    ids = {task.current_version_id}
    newest = task.versions.order_by("-number").values_list("pk", flat=True).first()
    ids.add(newest)
    ids.update(Round.objects.filter(task=task, status__in=[Round.Status.OPEN, Round.Status.AGGREGATING])
               .values_list("base_version_id", flat=True))
    return {i for i in ids if i is not None}


def prunable_versions(task: Task, keep: int) -> list[ModelVersion]:
    """The task's versions that ``delete_versions`` would delete when keeping the newest ``keep``, oldest first."""
    if keep < 1:
        raise VersionError("Keep at least the newest version (keep >= 1): version numbers are never reused.")
    kept = set(task.versions.order_by("-number").values_list("pk", flat=True)[:keep]) | protected_version_ids(task)
    return list(task.versions.exclude(pk__in=kept).order_by("number"))


def delete_versions(task: Task, keep: int) -> list[ModelVersion]:
    """Delete the task's versions but the newest ``keep`` and the protected ones: rows, then their files.

    Checked again under the task's lock, so a round or a new current version that appeared meanwhile
    is respected. What points at a deleted version is cleared, not deleted: a finished round's base
    or result, a conversion job's result, a child version's parent. The files are removed after the
    commit; a run cut short leaves files without a row at worst, never a row without its files.
    """
    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        doomed = prunable_versions(locked, keep)
        folders = [v.storage_dir for v in doomed]
        paths = [v.storage_path(name) for v in doomed for name in v.file_names()]
        ModelVersion.objects.filter(pk__in=[v.pk for v in doomed]).delete()
        transaction.on_commit(lambda: _delete_folders(paths, folders))
    return doomed


def _delete_folders(paths: list[str], folders: list[str]) -> None:
    delete_files(paths)
    for folder in folders:
        with contextlib.suppress(NotImplementedError, OSError):  # storages without folders have none to remove
            os.rmdir(default_storage.path(folder))


def read_file(version: ModelVersion, name: str) -> bytes:
    """The bytes of one of ``version``'s files."""
    if name not in version.file_names():
        raise FileNotFoundError(f"Version {version} has no file {name!r}.")
    with default_storage.open(version.storage_path(name), "rb") as fh:
        return fh.read()
