"""Contributors' pages: create a task, edit one, list one's tasks, and follow conversion jobs.

The views check access and call ``tasks.creation``; the rules and the writes live there.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.utils import ErrorDict
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_safe

from disco_site.throttling import TaskCreationThrottle

from .creation import (
    CreationResult,
    can_edit,
    check_task,
    create_task,
    max_model_bytes,
    too_many_tasks_message,
    update_task,
)
from .forms import TaskForm, initial_from_task
from .models import ConversionJob, Task
from .upload_limit import refused_upload


def _editable_task(request: HttpRequest, task_id: str) -> Task:
    """The task, if ``request.user`` may edit it: 404 when it does not exist, 403 when not theirs."""
    task = Task.objects.select_related("current_version").filter(pk=task_id).first()
    if task is None:
        raise Http404(f"No task with id '{task_id}'.")
    if not can_edit(request.user, task):
        raise PermissionDenied("Only the task's owner or an administrator can change it.")
    return task


def _save(request: HttpRequest, form: TaskForm, task: Task | None) -> CreationResult | None:
    """Validate the form and call the service; on any problem, put every message in ``form``."""
    valid = form.is_valid()
    values = form.spec_values()
    random_init = bool(form.cleaned_data.get("random_init"))
    files_failed = "model_files" in form.errors
    files = {} if files_failed else form.model_file_bytes()
    if not valid:
        errors, _ = check_task(values, files or None, task=task, allow_random_init=random_init,
                               model_required=task is None and not files_failed)
        form.add_service_errors(errors)
        return None
    try:
        if task is None:
            return create_task(request.user, values, files, allow_random_init=random_init)
        return update_task(task, request.user, values, files or None, allow_random_init=random_init)
    except ValidationError as exc:
        form.add_service_errors(exc.message_dict)
        return None


def _announce(request: HttpRequest, result: CreationResult, created: bool) -> None:
    task = result.task
    what = "created" if created else "saved"
    if result.job is not None:
        model = "Your model is being converted: follow its status below."
    elif result.version is not None:
        model = f"Your model is stored as version {result.version.number}."
    else:
        model = ""
    if result.sent_to_review:
        review = (" Your change awaits an administrator's review: until it is published again, the task is "
                  "hidden from the catalogue and only you and administrators can open it.")
    elif not task.published and task.review_requested_at is not None:
        review = " An administrator publishes it in the catalogue after a review."
    else:
        review = ""
    level = messages.WARNING if result.sent_to_review else messages.SUCCESS
    messages.add_message(request, level, f"Task '{task.title}' {what}. {model}{review}".strip())


def _render_form(request: HttpRequest, form: TaskForm, task: Task | None, status: int = 200) -> HttpResponse:
    return render(request, "tasks/task_form.html", {
        "form": form, "task": task,
        # Browsers never re-send files after an error: say so next to the file input.
        "reselect_files": request.method == "POST" and bool(request.FILES.getlist("model_files")),
        "max_model_bytes": max_model_bytes(),
    }, status=status)


def _upload_refusal(request: HttpRequest) -> str | None:
    request.FILES  # noqa: B018 - parse the body now: the upload handlers decide while it streams
    return refused_upload(request)


def _refused_upload_form(request: HttpRequest, message: str, task: Task | None) -> HttpResponse:
    """The form again, with what was typed before the files and the upload's refusal under the file input."""
    initial = {**(initial_from_task(task) if task else {}), **request.POST.dict()}
    form = TaskForm(initial=initial, task=task)
    form._errors, form.cleaned_data = ErrorDict(), {}  # not validated: the other fields were not all read
    form.add_error("model_files", message)
    return _render_form(request, form, task, status=413)


@login_required
@require_http_methods(["GET", "POST"])
def create_task_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and (refused := _upload_refusal(request)):
        return _refused_upload_form(request, refused, None)
    form = TaskForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        throttle = TaskCreationThrottle()
        if not throttle.allow_request(request, None):
            form.is_valid()  # keep what was typed, and show the refusal above the form
            form.add_error(None, too_many_tasks_message(throttle.wait()))
            return _render_form(request, form, None, status=429)
        result = _save(request, form, None)
        if result is not None:
            _announce(request, result, created=True)
            return redirect(result.task.get_absolute_url())
    return _render_form(request, form, None)


@login_required
@require_http_methods(["GET", "POST"])
def edit_task_view(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _editable_task(request, task_id)
    if request.method == "POST" and (refused := _upload_refusal(request)):
        return _refused_upload_form(request, refused, task)
    form = TaskForm(request.POST or None, request.FILES or None, task=task)
    if request.method == "POST":
        result = _save(request, form, task)
        if result is not None:
            _announce(request, result, created=False)
            return redirect(result.task.get_absolute_url())
    return _render_form(request, form, task)


@login_required
@require_safe
def my_tasks(request: HttpRequest) -> HttpResponse:
    """The user's tasks (administrators: everyone's), with publication and model status."""
    tasks = Task.objects.select_related("current_version", "owner").prefetch_related("conversion_jobs")
    if not request.user.is_staff:
        tasks = tasks.filter(owner=request.user)
    rows = [{"task": t, "job": next(iter(t.conversion_jobs.all()), None)} for t in tasks.order_by("-created_at")]
    return render(request, "tasks/my_tasks.html", {"rows": rows, "show_owner": request.user.is_staff})


def job_as_json(job: ConversionJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "status": job.status,
        "message": job.message,
        "created": job.created_at.isoformat(),
        "finished": job.finished_at.isoformat() if job.finished_at else None,
        "version": job.result.number if job.result_id else None,
    }


@login_required
@require_safe
def job_status(request: HttpRequest, task_id: str) -> JsonResponse:
    """The task's conversion jobs, newest first (owner and administrators only)."""
    task = _editable_task(request, task_id)
    jobs = task.conversion_jobs.select_related("result")[:20]
    response = JsonResponse([job_as_json(job) for job in jobs], safe=False)
    response["Cache-Control"] = "no-store"
    return response
