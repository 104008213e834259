"""Pages of the catalogue and the model file endpoints that TF.js loads from."""

from __future__ import annotations

import json

from django.core.files.storage import default_storage
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from .choices import DataType, Scheme
from .models import ModelVersion, Task

IMMUTABLE = "public, max-age=31536000, immutable"


def _visible_task(request: HttpRequest, task_id: str) -> Task | None:
    return Task.objects.visible_to(request.user).select_related("current_version").filter(pk=task_id).first()


def _not_found(message: str) -> JsonResponse:
    return JsonResponse({"detail": message, "status": 404}, status=404)


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    tasks = Task.objects.visible_to(request.user).filter(published=True)
    counts = {row["scheme"]: row["n"] for row in tasks.values("scheme").annotate(n=Count("id"))}
    return render(request, "home.html", {"task_count": tasks.count(), "scheme_counts": counts,
                                         "featured": tasks.select_related("current_version")[:3]})


@require_safe
def task_list(request: HttpRequest) -> HttpResponse:
    tasks = Task.objects.visible_to(request.user).select_related("current_version")
    scheme, data_type = request.GET.get("scheme", ""), request.GET.get("data_type", "")
    if scheme in Scheme.values:
        tasks = tasks.filter(scheme=scheme)
    if data_type in DataType.values:
        tasks = tasks.filter(data_type=data_type)
    return render(request, "tasks/task_list.html", {
        "tasks": tasks, "schemes": Scheme.choices, "data_types": DataType.choices,
        "scheme": scheme, "data_type": data_type,
    })


@require_safe
def task_detail(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _visible_task(request, task_id)
    if task is None:
        raise Http404(f"No task with id '{task_id}'.")
    return render(request, "tasks/task_detail.html", {
        "task": task, "versions": task.versions.all()[:10],
        "active_job": task.conversion_jobs.filter(status__in=["queued", "running"]).first(),
    })


@require_safe
def current_model_json(request: HttpRequest, task_id: str) -> HttpResponse:
    """The current version's model.json, its weight paths pointing into that fixed version.

    TF.js resolves weight paths against the model.json URL, so ``versions/<n>/<shard>``
    lands on the immutable files of the very version this model.json belongs to, even
    if the task's current version changes between the two requests.
    """
    task = _visible_task(request, task_id)
    if task is None:
        return _not_found(f"No task with id '{task_id}'. GET /api/tasks/ lists the available tasks.")
    version = task.current_version
    if version is None:
        return _not_found(f"Task '{task_id}' has no model yet: its conversion is queued or failed (see the task page).")
    etag = f'"{version.sha256}"'
    if request.headers.get("If-None-Match") == etag:
        return HttpResponse(status=304, headers={"ETag": etag})
    with default_storage.open(version.storage_path("model.json"), "rb") as fh:
        model = json.load(fh)
    for group in model.get("weightsManifest", []):
        group["paths"] = [f"versions/{version.number}/{path}" for path in group["paths"]]
    response = JsonResponse(model)
    response["Cache-Control"] = "no-cache"
    response["ETag"] = etag
    response["X-Disco-Model-Version"] = str(version.number)
    return response


@require_safe
def version_file(request: HttpRequest, task_id: str, number: int, name: str) -> HttpResponse:
    """One file of a fixed version: immutable, cacheable for a year."""
    task = _visible_task(request, task_id)
    if task is None:
        return _not_found(f"No task with id '{task_id}'. GET /api/tasks/ lists the available tasks.")
    version = ModelVersion.objects.filter(task=task, number=number).first()
    if version is None:
        return _not_found(f"Task '{task_id}' has no version {number}. See /api/tasks/{task_id}/versions/.")
    if name not in version.file_names():
        names = ", ".join(version.file_names())
        return _not_found(f"Version {number} of '{task_id}' has no file '{name}'; it has {names}.")
    content_type = "application/json" if name.endswith(".json") else "application/octet-stream"
    response = FileResponse(default_storage.open(version.storage_path(name), "rb"), content_type=content_type)
    response["Cache-Control"] = IMMUTABLE
    response["ETag"] = f'"{next(f["sha256"] for f in version.files if f["name"] == name)}"'
    return response
