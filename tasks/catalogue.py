"""Services that put tasks in the catalogue (used by ``load_default_tasks`` and tests)."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from disco_site.jobs import enqueue_on_commit

from .models import ConversionJob, Task
from .providers import TaskProvider
from .tasks import convert_provider_model
from .validation import validate_task_fields


@dataclass
class LoadResult:
    task: Task
    created: bool
    job: ConversionJob | None


def load_provider_task(provider: TaskProvider, *, update: bool = False, publish: bool = True) -> LoadResult:
    """Create (or with ``update``, refresh) the provider's task, and queue its model build when it has none.

    Idempotent: an existing task keeps the administrator's edits unless ``update`` is
    set, and a task with a current version or an unfinished job gets no new job.
    """
    spec = provider.get_task()
    errors = validate_task_fields(spec.as_fields())
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=spec.id).first()
        created = task is None
        if created:
            task = Task.objects.create(**spec.as_fields(), provider=spec.id, published=publish)
        elif update:
            for name, value in spec.as_fields().items():
                setattr(task, name, value)
            task.provider = spec.id
            task.save()
        job = None
        has_active_job = task.conversion_jobs.filter(
            status__in=[ConversionJob.Status.QUEUED, ConversionJob.Status.RUNNING]).exists()
        if task.current_version_id is None and not has_active_job:
            job = ConversionJob.objects.create(task=task, source=f"provider:{spec.id}")
            enqueue_on_commit(convert_provider_model, job.pk)
    if job is not None:
        job.refresh_from_db()
    return LoadResult(task=task, created=created, job=job)
