"""Creating and editing contributors' tasks: the one service behind the form and the API.

Everything is checked first (the task's settings with ``validate_task_fields``, the
uploaded model with ``tasks.uploads``) and every problem is raised at once as a
``ValidationError`` keyed by field name (``"model"`` for the upload). Only then is
anything written: the task row, and either a model version (a TF.js upload) or the
stored upload plus a ``ConversionJob`` that a worker converts after the commit. If any
step fails, the files written so far are deleted and the transaction rolls back, so no
task, version, job or file is left behind.

Publication is decided here too. A contributor's new task waits for an administrator's
review; so does a published task once its owner changes it (its text, its settings or its
model): it is unpublished and marked ``review_requested_at`` until an administrator
publishes it again, so nothing a stranger writes reaches the catalogue unreviewed.
Administrators' own edits and ``DISCO_AUTO_PUBLISH`` leave publication as it is.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from disco_site.jobs import enqueue_on_commit

from .choices import Origin
from .models import ConversionJob, ModelVersion, Task
from .rich_text import RICH_TEXT_FIELDS, sanitize_html
from .spec import SPEC_FIELDS, TaskSpec
from .validation import Errors, validate_task_fields
from .versions import create_version, delete_files, write_files

log = logging.getLogger(__name__)

MODEL_FIELD = "model"
# Paths under /tasks/ that a task id would shadow.
RESERVED_IDS = frozenset({"new", "mine"})


@dataclass(frozen=True)
class CreationResult:
    task: Task
    version: ModelVersion | None
    job: ConversionJob | None
    # True when this change took a published task out of the catalogue until a review.
    sent_to_review: bool = False


def can_edit(user: Any, task: Task) -> bool:
    """Owners edit their own tasks; administrators edit all."""
    return bool(user is not None and user.is_authenticated and (user.is_staff or task.owner_id == user.pk))


def max_model_bytes() -> int:
    return int(settings.DISCO_MAX_MODEL_BYTES)


def too_many_tasks_message(wait: float | None) -> str:
    from disco_site.throttling import TaskCreationThrottle, describe_rate, describe_wait

    rate = TaskCreationThrottle().get_rate()
    return (f"You have created too many tasks recently (limit {describe_rate(rate)}, setting "
            f"DISCO_TASK_CREATE_RATE). Nothing was created: try again in {describe_wait(wait or 60)}.")


def too_large_message(total: int) -> str:
    limit = max_model_bytes()
    return (f"The model files add up to {total / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB "
            "(setting DISCO_MAX_MODEL_BYTES). Upload a smaller model.")


def _add(errors: Errors, field: str, messages: list[str]) -> None:
    if messages:
        errors.setdefault(field, []).extend(messages)


def _check_upload(files: Mapping[str, bytes], values: Mapping[str, Any], *, allow_random_init: bool,
                  settings_ok: bool, errors: Errors) -> Any:
    """The inspected upload (``tasks.uploads.InspectedUpload``), or ``None`` with its problems in ``errors``."""
    from .model_fit import check_model_fits_task
    from .uploads import UploadError, inspect_model_upload

    total = sum(len(data) for data in files.values())
    if total > max_model_bytes():
        _add(errors, MODEL_FIELD, [too_large_message(total)])
        return None
    try:
        inspected = inspect_model_upload(files, allow_random_init=allow_random_init)
    except UploadError as exc:
        _add(errors, MODEL_FIELD, list(exc.problems) or [str(exc)])
        return None
    # The shape checks need valid task settings; with broken ones the settings' errors say enough.
    if inspected.kind == "tfjs" and settings_ok:
        _add(errors, MODEL_FIELD, check_model_fits_task(inspected.artifacts, values))
    return inspected


def check_task(values: Mapping[str, Any], files: Mapping[str, bytes] | None, *, task: Task | None = None,
               allow_random_init: bool = False, model_required: bool = True) -> tuple[Errors, Any]:
    """Every problem with these settings and files, keyed by field (``"model"`` for the upload).

    ``values`` may be partial: they complete the task's current settings, or for a new task
    the defaults. Returns the errors and the inspected upload (``None`` without files or
    when it is refused).
    """
    values = merged_values(values, task)
    errors: Errors = validate_task_fields(values)
    settings_ok = not errors
    task_id = values.get("id")
    if task is None:
        if task_id in RESERVED_IDS:
            _add(errors, "id", [f"'{task_id}' is reserved for a page of the site; choose another id."])
        elif isinstance(task_id, str) and Task.objects.filter(pk=task_id).exists():
            _add(errors, "id", [f"A task with the id '{task_id}' already exists; choose another id."])
    elif task_id != task.pk:
        _add(errors, "id", [f"A task's id cannot change (this task is '{task.pk}')."])
    upload = None
    if files:
        upload = _check_upload(files, values, allow_random_init=allow_random_init, settings_ok=settings_ok,
                               errors=errors)
    elif task is not None and settings_ok and task.current_version_id:
        from .model_fit import shape_settings_changed, version_fit_problems

        if shape_settings_changed(task.spec_values(), values):
            number = task.current_version.number
            _add(errors, MODEL_FIELD, [
                f"The current model (version {number}) does not fit the new settings: {problem} Upload a model "
                "that fits them in the same change, or keep the settings."
                for problem in version_fit_problems(task.current_version, values)])
    elif model_required:
        _add(errors, MODEL_FIELD, ["Upload the model: model.json with its .bin weight files (or a .zip of them), "
                                   "or a Keras .h5 / .keras file, or a zipped SavedModel."])
    return errors, upload


def _spec_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in SPEC_FIELDS if name in values}


def _defaults() -> dict[str, Any]:
    """``TaskSpec``'s defaults for the fields that have one (id, title and preview have none)."""
    out: dict[str, Any] = {}
    for name, f in TaskSpec.__dataclass_fields__.items():
        if f.default_factory is not MISSING:
            out[name] = f.default_factory()
        elif f.default is not MISSING:
            out[name] = f.default
    return out


def merged_values(values: Mapping[str, Any], task: Task | None = None) -> dict[str, Any]:
    """``values`` completing ``task``'s current settings, or the defaults for a new task."""
    base = task.spec_values() if task is not None else _defaults()
    return {**base, **_spec_values(values)}


def _store_source(task: Task, inspected: Any, written: list[str]) -> str:
    """Write an upload that a worker converts; return its storage path."""
    name = get_valid_filename(str(inspected.source_name).rsplit("/", 1)[-1]) or "model"
    (saved,) = write_files(f"uploads/{task.pk}/{uuid.uuid4().hex}", {name: inspected.source_bytes})
    written.append(saved)
    return saved


def _add_model(task: Task, inspected: Any, written: list[str], note: str) -> tuple[ModelVersion | None,
                                                                              ConversionJob | None]:
    """Inside the caller's transaction: a new version (TF.js) or a stored upload with its conversion job."""
    if inspected.kind == "tfjs":
        version = create_version(task, inspected.artifacts, origin=Origin.UPLOAD, note=note)
        written.extend(version.storage_path(name) for name in version.file_names())
        return version, None
    from .tasks import convert_uploaded_model

    path = _store_source(task, inspected, written)
    job = ConversionJob.objects.create(task=task, source=f"upload:{inspected.kind}", source_file=path,
                                       source_kind=inspected.kind)
    enqueue_on_commit(convert_uploaded_model, job.pk)
    return None, job


def _upload_note(files: Mapping[str, bytes], user: Any) -> str:
    names = ", ".join(sorted(files))
    note = f"Uploaded by {user.get_username()}: {names}" if user is not None else f"Uploaded: {names}"
    return note[:500]


def create_task(owner: Any, values: Mapping[str, Any], files: Mapping[str, bytes], *,
                allow_random_init: bool = False) -> CreationResult:
    """Create ``owner``'s task from spec ``values`` with its uploaded model ``files`` (name -> bytes).

    Raises ``ValidationError`` with ``{field: [messages]}`` and writes nothing when anything is wrong.
    New tasks are unpublished unless ``DISCO_AUTO_PUBLISH`` is on.
    """
    if owner is None or not owner.is_authenticated:
        raise PermissionDenied("Log in to create a task.")
    values = merged_values(values)
    errors, upload = check_task(values, files, allow_random_init=allow_random_init)
    if errors:
        raise ValidationError(errors)
    assert upload is not None
    written: list[str] = []
    try:
        with transaction.atomic():
            auto = bool(settings.DISCO_AUTO_PUBLISH)
            task = Task(**values, owner=owner, published=auto, review_requested_at=None if auto else timezone.now())
            task.save(force_insert=True)
            version, job = _add_model(task, upload, written, _upload_note(files, owner))
    except BaseException:
        delete_files(written)
        raise
    task.refresh_from_db()
    if job is not None:
        job.refresh_from_db()
    return CreationResult(task=task, version=version, job=job)


def _stored_value(name: str, value: Any) -> Any:
    """``value`` as ``Task.save`` stores it (rich text is sanitized)."""
    return sanitize_html(value) if name in RICH_TEXT_FIELDS and isinstance(value, str) else value


def needs_review(user: Any, changed: bool) -> bool:
    """Whether a change by ``user`` must wait for an administrator before the task is (again) public."""
    return changed and not settings.DISCO_AUTO_PUBLISH and not getattr(user, "is_staff", False)


def update_task(task: Task, user: Any, values: Mapping[str, Any], files: Mapping[str, bytes] | None = None, *,
                allow_random_init: bool = False) -> CreationResult:
    """Change ``task``'s settings (``values`` may be partial) and, with ``files``, add a new model version.

    Only the owner or an administrator may; nothing is overwritten: a new model is a new version.
    A change by a contributor (not an administrator) sends the task back to review: it is
    unpublished until an administrator publishes it again (unless ``DISCO_AUTO_PUBLISH``).
    """
    if not can_edit(user, task):
        raise PermissionDenied("Only the task's owner or an administrator can edit it.")
    merged = merged_values(values, task)
    errors, upload = check_task(merged, files, task=task, allow_random_init=allow_random_init, model_required=False)
    if errors:
        raise ValidationError(errors)
    written: list[str] = []
    version = job = None
    sent_to_review = False
    try:
        with transaction.atomic():
            locked = Task.objects.select_for_update().get(pk=task.pk)
            before = locked.spec_values()
            for name, value in merged.items():
                setattr(locked, name, value)
            # Compare what would be stored: rich text is sanitized on save, so compare it sanitized.
            changed = upload is not None or any(before[name] != _stored_value(name, merged[name]) for name in merged)
            if needs_review(user, changed):
                sent_to_review = locked.published
                locked.published = False
                locked.review_requested_at = locked.review_requested_at or timezone.now()
            locked.save()
            if upload is not None:
                version, job = _add_model(locked, upload, written, _upload_note(files or {}, user))
    except BaseException:
        delete_files(written)
        raise
    task.refresh_from_db()
    if job is not None:
        job.refresh_from_db()
    return CreationResult(task=task, version=version, job=job, sent_to_review=sent_to_review)
