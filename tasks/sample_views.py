"""Sample data of the predefined tasks: a manifest, each file, and everything as a zip.

``/tasks/<id>/sample-data/`` answers ``{"mode", "files": [{name, url, label?}], "zip"}``;
``mode`` says how a page connects them: ``csv`` (images + ``labels.csv``), ``tabular`` or ``text``.
Files are generated on the first request (``tasks.sample_data``) and cached under
``MEDIA_ROOT/samples/<task>/v<GENERATOR_VERSION>/``: they are written into a temporary folder
which is then renamed into place, so a reader never sees a half-written cache.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from . import sample_data
from .models import Task
from .participation import request_refusal

MANIFEST = "manifest.json"
CONTENT_TYPES = {".png": "image/png", ".csv": "text/csv; charset=utf-8", ".txt": "text/plain; charset=utf-8",
                 ".zip": "application/zip"}


def _not_found(message: str) -> JsonResponse:
    return JsonResponse({"detail": message, "status": 404}, status=404)


def _cache_dir(task_id: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "samples" / task_id / f"v{sample_data.GENERATOR_VERSION}"


def _zip_name(task_id: str) -> str:
    return f"{task_id}-sample-data.zip"


def ensure_samples(task: Task) -> tuple[Path, dict]:
    """The cached sample folder of ``task`` and its manifest, generating them if needed."""
    final = _cache_dir(task.id)
    if (final / MANIFEST).is_file():
        return final, json.loads((final / MANIFEST).read_text("utf-8"))
    files = sample_data.sample_files(task.id)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        for name, content in files.items():
            (tmp / name).write_bytes(content)
        with zipfile.ZipFile(tmp / _zip_name(task.id), "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in sorted(files.items()):
                # A fixed date keeps the archive's bytes the same on every machine.
                archive.writestr(zipfile.ZipInfo(f"{task.id}/{name}", date_time=(2024, 1, 1, 0, 0, 0)), content)
        labels = _labels_of(files)
        entries = [{"name": name, **({"label": labels[name]} if name in labels else {})} for name in sorted(files)]
        manifest = {"task": task.id, "mode": sample_data.MODES[task.data_type], "files": entries,
                    "zip": _zip_name(task.id), "version": sample_data.GENERATOR_VERSION}
        (tmp / MANIFEST).write_text(json.dumps(manifest), "utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).is_file():  # not a concurrent request that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, json.loads((final / MANIFEST).read_text("utf-8"))


def _labels_of(files: dict[str, bytes]) -> dict[str, str]:
    if "labels.csv" not in files:
        return {}
    lines = files["labels.csv"].decode().splitlines()[1:]
    return dict(line.split(",", 1) for line in lines if "," in line)


def _task_or_404(request: HttpRequest, task_id: str) -> Task | JsonResponse:
    task = Task.objects.visible_to(request.user).filter(pk=task_id).first()
    if task is None:
        return _not_found(f"No task with id '{task_id}'. GET /api/tasks/ lists the available tasks.")
    refusal = request_refusal(request, task)
    if refusal is not None:
        return JsonResponse({"detail": refusal.message, "code": refusal.code, "status": 403}, status=403)
    if not sample_data.has_sample_data(task.id):
        return _not_found(f"Task '{task_id}' has no generated sample data (only the predefined tasks have). "
                          "Its page describes the data it needs; use files of your own.")
    return task


@require_safe
def sample_manifest(request: HttpRequest, task_id: str) -> HttpResponse:
    """The list of sample files with their URLs (and labels, for images)."""
    task = _task_or_404(request, task_id)
    if isinstance(task, JsonResponse):
        return task
    _, manifest = ensure_samples(task)
    for entry in manifest["files"]:
        entry["url"] = reverse("tasks:sample-file", args=[task.id, entry["name"]])
    manifest["zip"] = reverse("tasks:sample-zip", args=[task.id])
    return JsonResponse(manifest)


def _file_response(path: Path, name: str, attachment: bool = False) -> FileResponse:
    content_type = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
    response = FileResponse(path.open("rb"), content_type=content_type, as_attachment=attachment, filename=name)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_safe
def sample_file(request: HttpRequest, task_id: str, name: str) -> HttpResponse:
    """One sample file, by the name the manifest lists."""
    task = _task_or_404(request, task_id)
    if isinstance(task, JsonResponse):
        return task
    folder, manifest = ensure_samples(task)
    names = [entry["name"] for entry in manifest["files"]]
    if name not in names:
        return _not_found(f"Task '{task_id}' has no sample file '{name}'. "
                          f"See /tasks/{task_id}/sample-data/ for the list.")
    return _file_response(folder / name, name)


@require_safe
def sample_zip(request: HttpRequest, task_id: str) -> HttpResponse:
    """Every sample file of the task in one zip archive."""
    task = _task_or_404(request, task_id)
    if isinstance(task, JsonResponse):
        return task
    folder, manifest = ensure_samples(task)
    return _file_response(folder / manifest["zip"], manifest["zip"], attachment=True)
