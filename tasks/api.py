"""The REST API of the catalogue: ``/api/tasks/``, ``/api/tasks/<id>/``, ``.../versions/``.

Reading is open (published tasks, plus one's own). Signed-in contributors create tasks with
``POST /api/tasks/`` and their owners change them with ``PATCH /api/tasks/<id>/``, through
``tasks.creation``: the same service and the same messages as the form.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, Throttled
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from aggregation.accountant import DEFAULT_DELTA, NEIGHBOURING_RELATION, privacy_spent, rounds_recorded
from aggregation.aggregators.registry import registry_json
from disco_site.throttling import TaskCreationThrottle, ThrottledTokenAuthentication

from .contributor_views import job_as_json
from .creation import (
    can_edit,
    create_task,
    max_model_bytes,
    too_large_message,
    too_many_tasks_message,
    update_task,
)
from .models import Task
from .participation import invitation_path, rotate_invitation
from .serializers import DiscoTaskError, ModelVersionSerializer, TaskSerializer, task_values_from_disco
from .upload_limit import refused_upload

_TRUE = {"1", "true", "yes", "on"}


class _BadInputError(Exception):
    def __init__(self, errors: dict[str, list[str]], status_code: int = status.HTTP_400_BAD_REQUEST):
        self.errors, self.status_code = errors, status_code


def _task_input(request: Request) -> tuple[dict[str, Any], dict[str, bytes], bool]:
    """The task values, model files and random-init flag of a create or update request.

    Multipart: a ``task`` part with the task JSON (as GET returns it), ``model`` parts with
    the files, and optionally ``random_init=true``. JSON: the task itself as the body.
    """
    data = request.data  # parsing runs the upload handlers, which may have stopped the upload
    refused = refused_upload(request)
    if refused:
        raise _BadInputError({"model": [refused]}, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if request.content_type.startswith("application/json"):
        raw = dict(data) if isinstance(data, dict) else data
        random_init = False
        if isinstance(raw, dict):
            random_init = str(raw.pop("random_init", "")).lower() in _TRUE
    else:
        part = data.get("task")
        if part is None:
            raise _BadInputError({"task": ["Send the task as JSON in a form part named 'task' (the shape GET "
                                      "/api/tasks/<id>/ returns), and the model files as parts named 'model'."]})
        if hasattr(part, "read"):
            part = part.read()
        try:
            raw = json.loads(part)
        except (TypeError, ValueError) as exc:
            raise _BadInputError({"task": [f"The 'task' part is not valid JSON: {exc}."]}) from None
        random_init = str(data.get("random_init", "")).lower() in _TRUE
    try:
        values = task_values_from_disco(raw)
    except DiscoTaskError as exc:
        raise _BadInputError(exc.errors) from None
    uploads = request.FILES.getlist("model") if hasattr(request, "FILES") else []
    total = sum(f.size for f in uploads)
    if total > max_model_bytes():  # refuse before reading anything into memory
        raise _BadInputError({"model": [too_large_message(total)]})
    names = [f.name for f in uploads]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _BadInputError({"model": [f"Two model parts have the same file name: {', '.join(duplicates)}."]})
    return values, {f.name: f.read() for f in uploads}, random_init


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with the status name added so clients can branch on it."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data["status"] = response.status_code
    return response


class BrowsableAPIWithoutForms(BrowsableAPIRenderer):
    """DRF's HTML pages without their write forms: a task is written as DISCO's JSON plus model files, which
    neither of DRF's forms can send (``TaskSerializer`` declares no fields, so drawing them was a server error for
    staff). Staff create and change tasks with the task form (``/tasks/new/``) or the API."""

    def show_form_for_method(self, view: Any, method: str, request: Request, obj: Any) -> bool:
        return False


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Published tasks (plus, for a signed-in user, their own; for administrators, all).

    ``POST`` creates a task (signed-in users), ``PATCH``/``PUT`` change one (its owner or an
    administrator); both take the task in DISCO's shape, and ``PUT`` too may leave keys out.
    """

    serializer_class = TaskSerializer
    renderer_classes = [JSONRenderer, BrowsableAPIWithoutForms]
    lookup_value_regex = "[^/]+"
    # Token first, so that an anonymous write answers 401 with a WWW-Authenticate header.
    authentication_classes = [ThrottledTokenAuthentication, SessionAuthentication]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [TaskCreationThrottle]  # counts POST only; the creation form shares the counter

    def throttled(self, request: Request, wait: float | None) -> Any:
        raise Throttled(wait, detail=too_many_tasks_message(wait))

    def get_permissions(self):
        if self.action in ("create", "update", "partial_update"):
            return [IsAuthenticated()]
        return [AllowAny()]

    def get_queryset(self):
        return Task.objects.visible_to(self.request.user).select_related("current_version", "owner")

    def get_object(self) -> Task:
        task_id = self.kwargs["pk"]
        task = self.get_queryset().filter(pk=task_id).first()
        if task is None:
            raise NotFound(f"No task with id '{task_id}'. GET /api/tasks/ lists the available tasks.")
        return task

    def _respond(self, result: Any, status_code: int) -> Response:
        body = TaskSerializer(result.task, context={"request": self.request}).data
        body["conversionJob"] = job_as_json(result.job) if result.job is not None else None
        headers = {"Location": body["versionsUrl"].rsplit("versions/", 1)[0]} if status_code == 201 else None
        return Response(body, status=status_code, headers=headers)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            values, files, random_init = _task_input(request)
            result = create_task(request.user, values, files, allow_random_init=random_init)
        except _BadInputError as exc:
            return Response(exc.errors, status=exc.status_code)
        except ValidationError as exc:
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        return self._respond(result, status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        task = self.get_object()
        if not can_edit(request.user, task):
            raise PermissionDenied("Only the task's owner or an administrator can change it.")
        try:
            values, files, random_init = _task_input(request)
            result = update_task(task, request.user, values, files or None, allow_random_init=random_init)
        except _BadInputError as exc:
            return Response(exc.errors, status=exc.status_code)
        except ValidationError as exc:
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        return self._respond(result, status.HTTP_200_OK)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, **kwargs)

    @action(detail=True)
    def versions(self, request: Request, pk: str | None = None) -> Response:
        task = self.get_object()
        versions = task.versions.select_related("parent", "task")
        return Response(ModelVersionSerializer(versions, many=True, context={"request": request}).data)

    @action(detail=True, methods=["get", "post"], permission_classes=[IsAuthenticated])
    def invitation(self, request: Request, pk: str | None = None) -> Response:
        """The owner's invitation link (GET), or a new one replacing it (POST: old links stop working)."""
        task = self.get_object()
        if not can_edit(request.user, task):
            raise PermissionDenied("Only the task's owner or an administrator can see or replace its invitation link.")
        if task.participation != "invited":
            return Response({"detail": f"Task '{task.id}' is not invitation-only (participation is "
                                       f"'{task.participation}'); set participation to 'invited' first.",
                             "status": 400}, status=status.HTTP_400_BAD_REQUEST)
        if request.method == "POST":
            rotate_invitation(task)
        path = invitation_path(task)
        return Response({"participation": task.participation, "invitationUrl": request.build_absolute_uri(path),
                         "secret": task.invitation_secret})

    @action(detail=True)
    def privacy(self, request: Request, pk: str | None = None) -> Response:
        """The (epsilon, delta) a participant has spent so far, from the rounds the server recorded.

        The number of rounds is the server's (``aggregation.accountant.rounds_recorded``); a
        ``rounds`` query parameter is ignored.
        """
        task = self.get_object()
        if task.clipping_radius is None or task.noise_scale is None:
            return Response({"detail": f"Task '{task.id}' has no differential privacy settings (clipping radius and "
                                       "noise scale), so there is no privacy budget to report.", "status": 400},
                            status=status.HTTP_400_BAD_REQUEST)
        delta = getattr(settings, "DISCO_PRIVACY_DELTA", DEFAULT_DELTA)
        rounds = rounds_recorded(task)
        epsilon = privacy_spent(task.noise_scale, rounds, delta)
        body = {"clippingRadius": task.clipping_radius, "noiseScale": task.noise_scale, "delta": delta,
                "rounds": rounds, "epsilon": epsilon if math.isfinite(epsilon) else None,
                "neighbouringRelation": NEIGHBOURING_RELATION}
        if not math.isfinite(epsilon):
            body["note"] = "The noise scale is 0: updates are clipped but not noised, so there is no privacy guarantee."
        return Response(body)


class AggregationRegistryViewSet(viewsets.ViewSet):
    """``GET /api/aggregators/``: every aggregator and server optimizer a task can choose, with its parameters
    (type, default, bounds, help), from the registry the validation uses (``aggregation.aggregators.registry``)."""

    permission_classes = [AllowAny]

    def list(self, request: Request) -> Response:
        return Response(registry_json())
