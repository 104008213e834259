"""Celery tasks of the catalogue (queue ``conversion``: these import TensorFlow).

The ``ConversionJob`` row is the source of truth: a task that runs twice (a
worker killed after the work but before the ack) finds the job done and returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from .choices import Origin
from .models import ConversionJob, ModelVersion
from .providers import TfjsModelFiles, get_provider
from .tfjs_format import LayersModelArtifacts, ModelFormatError
from .versions import create_version

log = logging.getLogger(__name__)


def _provider_artifacts(task_id: str) -> LayersModelArtifacts:
    from .conversion import keras_model_to_tfjs, tfjs_files_to_artifacts

    model = get_provider(task_id).get_model()
    if isinstance(model, TfjsModelFiles):
        return tfjs_files_to_artifacts(model.model_json)
    return keras_model_to_tfjs(model)


def _explain(exc: BaseException) -> str:
    from .uploads import UploadError

    if isinstance(exc, UploadError):
        return " ".join(exc.problems)
    if isinstance(exc, ModelFormatError):
        return "The converted model is not a usable TF.js layers model: " + " ".join(exc.problems)
    if isinstance(exc, SoftTimeLimitExceeded):
        return ("The conversion job ran out of time and was stopped. Try again later; if it happens again, upload a "
                "smaller model or ask the administrator to raise DISCO_CONVERSION_TIMEOUT.")
    return (f"The conversion failed unexpectedly ({type(exc).__name__}: {exc}). Try again; if it fails again, "
            "an administrator can find the details in the worker's log.")


@dataclass(frozen=True)
class _Outcome:
    artifacts: LayersModelArtifacts
    origin: str
    note: str
    message: Callable[[ModelVersion], str]


def _run_job(job_id: int, produce: Callable[[ConversionJob], _Outcome]) -> int | None:
    """Claim the job, produce its artifacts, store them as the task's next version; record any failure.

    The job row is the source of truth: a finished job is never run again, and the version
    and the job's completion commit together, so a retried task stores exactly one version.
    """
    with transaction.atomic():
        job = ConversionJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in (ConversionJob.Status.DONE, ConversionJob.Status.FAILED):
            return job.result_id if job else None
        job.status, job.started_at = ConversionJob.Status.RUNNING, timezone.now()
        job.save(update_fields=["status", "started_at"])
    try:
        outcome = produce(job)
        with transaction.atomic():
            job = ConversionJob.objects.select_for_update().get(pk=job_id)
            if job.status == ConversionJob.Status.DONE:
                return job.result_id
            version = create_version(job.task, outcome.artifacts, origin=outcome.origin, note=outcome.note)
            job.status, job.result, job.finished_at = ConversionJob.Status.DONE, version, timezone.now()
            job.message = outcome.message(version)
            job.save(update_fields=["status", "result", "finished_at", "message"])
        return version.pk
    except Exception as exc:
        log.exception("Conversion job %s failed", job_id)
        ConversionJob.objects.filter(pk=job_id).update(
            status=ConversionJob.Status.FAILED, message=_explain(exc), finished_at=timezone.now()
        )
        return None


@shared_task(acks_late=True, reject_on_worker_lost=True)
def convert_provider_model(job_id: int) -> int | None:
    """Build the provider's model, convert it to TF.js and store it as the task's initial version."""

    def produce(job: ConversionJob) -> _Outcome:
        return _Outcome(_provider_artifacts(job.task_id), Origin.INITIAL, f"Built by the task provider ({job.source}).",
                        lambda v: f"Stored version {v.number}: {v.parameter_count:,} parameters.")

    return _run_job(job_id, produce)


_SOURCE_WORDS = {
    "keras_h5": ".h5 model",
    "keras_v3": ".keras model",
    "saved_model": "SavedModel",
    "tfjs_architecture": "TF.js model architecture with random initial weights",
}


def _describe_source(kind: str, keras_version: str) -> str:
    words = _SOURCE_WORDS.get(kind, "model")
    if kind == "tfjs_architecture":
        return f"a {words}"
    return f"a Keras {keras_version} {words}" if keras_version else f"a Keras {words}"


@shared_task(acks_late=True, reject_on_worker_lost=True)
def convert_uploaded_model(job_id: int) -> int | None:
    """Convert a contributor's uploaded model (``job.source_file``) and store it as the task's next version.

    Failures end the job with the reasons in plain words (never a traceback) and leave
    every row and stored file but the job's own status as they were.
    """

    def produce(job: ConversionJob) -> _Outcome:
        from .isolated_conversion import convert_untrusted
        from .model_fit import check_model_fits_task
        from .uploads import UploadError

        try:
            with default_storage.open(job.source_file, "rb") as fh:
                data = fh.read()
        except (OSError, ValueError):
            raise UploadError(["The uploaded model file is no longer in storage: upload the model again."]) from None
        converted = convert_untrusted(job.source_kind, job.source_file.rsplit("/", 1)[-1], data)
        artifacts = converted.artifacts
        problems = check_model_fits_task(artifacts, job.task.spec_values(), output_shapes=converted.output_shapes)
        if problems:
            raise UploadError(problems)
        source = _describe_source(job.source_kind, converted.keras_version)
        return _Outcome(artifacts, Origin.CONVERSION, f"Converted from {source} ({job.source}).",
                        lambda v: f"Converted {source}: {v.parameter_count:,} parameters, version {v.number}.")

    return _run_job(job_id, produce)
