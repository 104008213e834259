"""The read-only REST API of the catalogue: ``/api/tasks/``, ``/api/tasks/<id>/``, ``.../versions/``."""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .models import Task
from .serializers import ModelVersionSerializer, TaskSerializer


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with the status name added so clients can branch on it."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data["status"] = response.status_code
    return response


class TaskViewSet(viewsets.ReadOnlyModelViewSet):
    """Published tasks (plus, for a signed-in user, their own; for administrators, all)."""

    serializer_class = TaskSerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return Task.objects.visible_to(self.request.user).select_related("current_version", "owner")

    def get_object(self) -> Task:
        task_id = self.kwargs["pk"]
        task = self.get_queryset().filter(pk=task_id).first()
        if task is None:
            raise NotFound(f"No task with id '{task_id}'. GET /api/tasks/ lists the available tasks.")
        return task

    @action(detail=True)
    def versions(self, request: Request, pk: str | None = None) -> Response:
        task = self.get_object()
        versions = task.versions.select_related("parent", "task")
        return Response(ModelVersionSerializer(versions, many=True, context={"request": request}).data)
