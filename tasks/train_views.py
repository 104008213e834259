"""The in-browser training page of a task: connect data, train, evaluate, keep the model.

Everything after the page load runs in the participant's browser (static/disco/pages/train.js);
the server only hands over the task's settings (embedded as JSON, the shape GET /api/tasks/<id>/
returns) and the URL of its current model.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from disco_site.security_headers import cross_origin_isolated

from .models import Task
from .participation import request_refusal
from .serializers import TaskSerializer


@require_safe
@cross_origin_isolated
def task_train(request: HttpRequest, task_id: str) -> HttpResponse:
    """The training page of ``task_id`` (404 for unknown or hidden tasks)."""
    task = Task.objects.visible_to(request.user).select_related("current_version").filter(pk=task_id).first()
    if task is None:
        raise Http404(f"No task with id '{task_id}'.")
    refusal = request_refusal(request, task)
    if refusal is not None:
        from .views import refused_page

        return refused_page(request, task, refusal.code)
    task_json = TaskSerializer(task, context={"request": request}).data
    return render(request, "tasks/train.html", {
        "task": task,
        "task_json": task_json,
        "model_url": reverse("tasks:model-json", args=[task.id]) if task.current_version_id else "",
        "sample_url": f"/tasks/{task.id}/sample-data/",
        "sample_zip_url": f"/tasks/{task.id}/sample-data.zip",
    })
