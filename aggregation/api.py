"""``GET /api/tasks/<id>/rounds/``: a task's rounds, newest first, paginated; ``?format=csv`` or
``/api/tasks/<id>/rounds.csv`` gives every row as CSV.

Who may see them: the task must be visible to the requester (as ``GET /api/tasks/<id>/``: published,
or their own, or any for an administrator), else 404; and only its owner and administrators see its
rounds, others get 403 pointing to the public summary on the task page.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from rest_framework import renderers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotAuthenticated, NotFound, PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from disco_site.throttling import ThrottledTokenAuthentication
from tasks.creation import can_edit
from tasks.models import Task

from .round_history import CSV_COLUMNS, csv_record, round_rows


class CSVRenderer(renderers.BaseRenderer):
    """The rows as CSV with a header line; an error (a dict with ``detail``) as its one line of text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        out = io.StringIO()
        if isinstance(data, dict):
            out.write(f"{data.get('detail', data)}\n")
        else:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            writer.writerows(csv_record(row) for row in data)
        return out.getvalue().encode()


class RoundPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def task_for_owner(user: Any, task_id: str) -> Task:
    """The task if ``user`` may see its rounds; ``NotFound`` / ``PermissionDenied`` saying why not."""
    task = Task.objects.visible_to(user).filter(pk=task_id).first()
    if task is None:
        raise NotFound(f"No task with id '{task_id}'. GET /api/tasks/ lists the available tasks.")
    if not user.is_authenticated:
        raise NotAuthenticated(f"Log in (or send an API token) as the owner of task '{task_id}' or an administrator "
                               f"to see its rounds; the task page (/tasks/{task_id}/) shows a summary of them.")
    if not can_edit(user, task):
        raise PermissionDenied(f"Only the owner of task '{task_id}' or an administrator can see its rounds; the "
                               f"task page (/tasks/{task_id}/) shows a summary of them.")
    return task


class TaskRoundsView(APIView):
    authentication_classes = [ThrottledTokenAuthentication, SessionAuthentication]
    renderer_classes = [renderers.JSONRenderer, renderers.BrowsableAPIRenderer, CSVRenderer]

    def get(self, request: Request, task_id: str, format: str | None = None) -> Response:  # noqa: A002 - DRF's name
        task = task_for_owner(request.user, task_id)
        rows = round_rows(task, request.build_absolute_uri)
        if request.accepted_renderer.format == "csv":
            return Response(rows, headers={
                "Content-Disposition": f'attachment; filename="{task.pk}-rounds.csv"', "Cache-Control": "no-store"})
        paginator = RoundPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(page)
