"""Pages of the catalogue and the model file endpoints that TF.js loads from."""

from __future__ import annotations

import json

from django.core.files.storage import default_storage
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from aggregation.round_history import summary as round_summary

from .choices import DataType, Participation, Scheme
from .creation import can_edit
from .models import ModelVersion, Task
from .participation import Refusal, grant_invitation, invitation_path, request_refusal, rotate_invitation

IMMUTABLE = "public, max-age=31536000, immutable"


def _visible_task(request: HttpRequest, task_id: str) -> Task | None:
    return Task.objects.visible_to(request.user).select_related("current_version").filter(pk=task_id).first()


def _not_found(message: str) -> JsonResponse:
    return JsonResponse({"detail": message, "status": 404}, status=404)


def refused_json(refusal: Refusal) -> JsonResponse:
    """403 for a file endpoint of a task this person may not take part in, saying what to do."""
    return JsonResponse({"detail": refusal.message, "code": refusal.code, "status": 403}, status=403)


def refused_page(request: HttpRequest, task: Task, code: str) -> HttpResponse:
    """403 for a page of a task this person may not take part in, saying what to do."""
    response = render(request, "tasks/refused.html", {"task": task, "code": code}, status=403)
    response["Referrer-Policy"] = "no-referrer"
    return response


def _cache_control(task: Task) -> str:
    """Files of a task that not everyone may fetch must never sit in a shared cache."""
    return IMMUTABLE if task.participation == Participation.OPEN else IMMUTABLE.replace("public", "private")


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
        "invitation_path": invitation_path(task) if can_edit(request.user, task) else "",
        "active_job": task.conversion_jobs.filter(status__in=["queued", "running"]).first(),
        "rounds": round_summary(task) if task.scheme != Scheme.LOCAL else None,
        "can_watch": can_edit(request.user, task),
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
    refusal = request_refusal(request, task)
    if refusal is not None:
        return refused_json(refusal)
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
    response["Cache-Control"] = "no-cache" if task.participation == Participation.OPEN else "private, no-cache"
    response["ETag"] = etag
    response["X-Disco-Model-Version"] = str(version.number)
    return response


@require_safe
def version_file(request: HttpRequest, task_id: str, number: int, name: str) -> HttpResponse:
    """One file of a fixed version: immutable, cacheable for a year."""
    task = _visible_task(request, task_id)
    if task is None:
        return _not_found(f"No task with id '{task_id}'. GET /api/tasks/ lists the available tasks.")
    refusal = request_refusal(request, task)
    if refusal is not None:
        return refused_json(refusal)
    version = ModelVersion.objects.filter(task=task, number=number).first()
    if version is None:
        return _not_found(f"Task '{task_id}' has no version {number}. See /api/tasks/{task_id}/versions/.")
    if name not in version.file_names():
        names = ", ".join(version.file_names())
        return _not_found(f"Version {number} of '{task_id}' has no file '{name}'; it has {names}.")
    content_type = "application/json" if name.endswith(".json") else "application/octet-stream"
    response = FileResponse(default_storage.open(version.storage_path(name), "rb"), content_type=content_type)
    response["Cache-Control"] = _cache_control(task)
    response["ETag"] = f'"{next(f["sha256"] for f in version.files if f["name"] == name)}"'
    return response


@require_safe
def join(request: HttpRequest, task_id: str, secret: str) -> HttpResponse:
    """An invitation link: remember the grant in the session and go to the training page.

    The secret appears in this one request's URL only; the redirect leads to a URL without it.
    """
    task = _visible_task(request, task_id)
    if task is None:
        raise Http404(f"No task with id '{task_id}'.")
    if task.participation != Participation.INVITED or not grant_invitation(request.session, task, secret):
        return refused_page(request, task, "invalid_invitation")
    response = redirect("tasks:train", task_id=task.pk)
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def rotate_invitation_view(request: HttpRequest, task_id: str) -> HttpResponse:
    """The owner replaces the invitation link; every earlier link and grant stops working."""
    task = _visible_task(request, task_id)
    if task is None:
        raise Http404(f"No task with id '{task_id}'.")
    if not can_edit(request.user, task):
        return HttpResponse("Only the task's owner or an administrator can replace its invitation link.",
                            status=403, content_type="text/plain; charset=utf-8")
    if task.participation == Participation.INVITED:
        rotate_invitation(task)
    return redirect("tasks:detail", task_id=task.pk)
