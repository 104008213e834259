"""The round dashboard at ``/tasks/<id>/rounds/``: a task's rounds, charted and tabled, kept live.

For the task's owner and administrators (others: 403 saying so; anonymous visitors: the log-in
page). The page carries its first rows (``json_script``); ``static/disco/pages/rounds.js`` draws
them, listens on ``/ws/observe/<task>/`` and fetches ``/api/tasks/<id>/rounds/`` again on each event.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from tasks.creation import can_edit
from tasks.models import Task

from .api import RoundPagination
from .round_history import round_rows


@require_safe
@login_required
def rounds_dashboard(request: HttpRequest, task_id: str) -> HttpResponse:
    task = Task.objects.visible_to(request.user).select_related("current_version").filter(pk=task_id).first()
    if task is None:
        raise Http404(f"No task with id '{task_id}'.")
    if not can_edit(request.user, task):
        return render(request, "tasks/rounds_refused.html", {"task": task}, status=403)
    api = f"/api/tasks/{task.pk}/rounds/"
    config = {
        "taskId": task.pk, "scheme": task.scheme, "apiUrl": api, "csvUrl": f"/api/tasks/{task.pk}/rounds.csv",
        "socketPath": f"/ws/observe/{task.pk}/", "pageSize": RoundPagination.max_page_size,
        "detailUrl": reverse("tasks:detail", args=[task.pk]),
        # Dropouts are known of decentralized rounds (peers that left the exchange) and of federated rounds that
        # invite participantsPerRound participants (invited, sent nothing): round_history.
        "showsDropouts": task.scheme == "decentralized" or bool(task.participants_per_round),
    }
    rows = round_rows(task)[:RoundPagination.max_page_size]
    return render(request, "tasks/rounds.html", {"task": task, "config": config, "rows": rows,
                                                 "csv_url": config["csvUrl"], "api_url": api,
                                                 "shows_dropouts": config["showsDropouts"]})
