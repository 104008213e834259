"""REST representations. Tasks are presented in DISCO's shape so DISCO-style clients read them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .models import ModelVersion, Task


def _absolute(request: Any, path: str) -> str:
    return request.build_absolute_uri(path) if request is not None else path


class ModelVersionSerializer(serializers.ModelSerializer):
    parent = serializers.SerializerMethodField()
    modelUrl = serializers.SerializerMethodField()
    isCurrent = serializers.SerializerMethodField()
    parameterCount = serializers.IntegerField(source="parameter_count")
    totalBytes = serializers.IntegerField(source="total_bytes")
    roundNumber = serializers.IntegerField(source="round_number")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = ModelVersion
        fields = ["number", "origin", "roundNumber", "parent", "sha256", "parameterCount", "totalBytes", "files",
                  "note", "createdAt", "isCurrent", "modelUrl"]

    def get_parent(self, version: ModelVersion) -> int | None:
        return version.parent.number if version.parent_id and version.parent.task_id == version.task_id else None

    def get_modelUrl(self, version: ModelVersion) -> str:  # noqa: N802 - JSON field name
        return _absolute(self.context.get("request"), version.url())

    def get_isCurrent(self, version: ModelVersion) -> bool:  # noqa: N802 - JSON field name
        return version.task.current_version_id == version.pk


class TaskSerializer(serializers.BaseSerializer):
    """A task as DISCO's ``Task``: id, displayInformation, trainingInformation (+ our catalogue fields)."""

    def to_representation(self, task: Task) -> dict[str, Any]:
        request = self.context.get("request")
        privacy = None
        if task.clipping_radius is not None:
            privacy = {"clippingRadius": task.clipping_radius, "noiseScale": task.noise_scale}
        training: dict[str, Any] = {
            "epochs": task.epochs,
            "roundDuration": task.round_duration,
            "validationSplit": task.validation_split,
            "batchSize": task.batch_size,
            "dataType": task.data_type,
            "scheme": task.scheme,
            "minNbOfParticipants": task.min_participants,
            "preprocessingFunctions": task.preprocessing,
            "privacy": privacy,
            "maxShareValue": task.max_share_value,
            "aggregationStrategy": task.aggregator,
            "aggregatorParams": task.aggregator_params,
            "serverOptimizer": task.server_optimizer,
            "serverOptimizerParams": task.server_optimizer_params,
            "roundDeadlineSeconds": task.round_deadline_seconds,
            "allowRelay": task.allow_relay,
            "participation": task.participation,
            "maxSamplesPerUpdate": task.max_samples_per_update,
            "maxContributionShare": task.max_contribution_share,
            "maxUpdateNorm": task.max_update_norm,
            "compression": task.compression,
            "participantsPerRound": task.participants_per_round,
        }
        if task.data_type == "image":
            training.update(IMAGE_H=task.image_height, IMAGE_W=task.image_width, imageChannels=task.image_channels,
                            LABEL_LIST=task.labels)
        elif task.data_type == "tabular":
            training.update(inputColumns=task.input_columns, outputColumns=task.output_columns,
                            LABEL_LIST=task.labels)
        else:
            training.update(tokenizer=task.tokenizer, maxSequenceLength=task.max_sequence_length)
        version = task.current_version
        return {
            "id": task.id,
            "displayInformation": {
                "taskTitle": task.title,
                "summary": {"preview": task.summary_preview, "overview": task.summary_overview},
                "model": task.model_description,
                "dataFormatInformation": task.data_format,
                "dataExampleText": task.data_example_text,
                "dataExample": task.data_example,
                "dataExampleImage": task.data_example_image,
                "sampleDatasetLink": task.sample_dataset_link,
                "sampleDatasetInstructions": task.sample_dataset_instructions,
            },
            "trainingInformation": training,
            "published": task.published,
            "awaitingReview": task.review_requested_at is not None,
            "owner": task.owner.get_username() if task.owner_id else None,
            "currentVersion": version.number if version else None,
            "modelUrl": _absolute(request, task.model_url()) if version else None,
            "versionsUrl": _absolute(request, f"/api/tasks/{task.id}/versions/"),
        }


# --- the inverse of TaskSerializer.to_representation: DISCO's JSON -> Task field values ----------
_DISPLAY_KEYS = {
    "taskTitle": "title", "model": "model_description", "dataFormatInformation": "data_format",
    "dataExampleText": "data_example_text", "dataExample": "data_example", "dataExampleImage": "data_example_image",
    "sampleDatasetLink": "sample_dataset_link", "sampleDatasetInstructions": "sample_dataset_instructions",
}
_TRAINING_KEYS = {
    "epochs": "epochs", "roundDuration": "round_duration", "validationSplit": "validation_split",
    "batchSize": "batch_size", "dataType": "data_type", "scheme": "scheme", "minNbOfParticipants": "min_participants",
    "preprocessingFunctions": "preprocessing", "maxShareValue": "max_share_value",
    "aggregationStrategy": "aggregator", "aggregatorParams": "aggregator_params",
    "serverOptimizer": "server_optimizer", "serverOptimizerParams": "server_optimizer_params",
    "IMAGE_H": "image_height", "IMAGE_W": "image_width", "imageChannels": "image_channels", "LABEL_LIST": "labels",
    "inputColumns": "input_columns", "outputColumns": "output_columns", "tokenizer": "tokenizer",
    "maxSequenceLength": "max_sequence_length", "roundDeadlineSeconds": "round_deadline_seconds",
    "allowRelay": "allow_relay", "participation": "participation", "maxSamplesPerUpdate": "max_samples_per_update",
    "maxContributionShare": "max_contribution_share", "maxUpdateNorm": "max_update_norm",
    "compression": "compression", "participantsPerRound": "participants_per_round",
}
# Keys GET returns that describe the catalogue, not the task: accepted and ignored on the way in.
_READ_ONLY_KEYS = {"published", "awaitingReview", "owner", "currentVersion", "modelUrl", "versionsUrl"}


class DiscoTaskError(ValueError):
    """The task JSON is not in DISCO's shape; ``errors`` is ``{field: [messages]}``."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(m for ms in errors.values() for m in ms))


def _object(data: Any, where: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.setdefault("task", []).append(f"{where} must be a JSON object.")
        return {}
    return data


def _unknown(data: dict[str, Any], known: set[str], where: str, errors: dict[str, list[str]]) -> None:
    extra = sorted(set(data) - known)
    if extra:
        errors.setdefault("task", []).append(
            f"Unknown key{'s' if len(extra) > 1 else ''} in {where}: {', '.join(extra)}. "
            f"Known: {', '.join(sorted(known))}.")


def task_values_from_disco(data: Any) -> dict[str, Any]:
    """Task field values from a task in DISCO's shape, as ``GET /api/tasks/<id>/`` returns it.

    Only the keys present are mapped, so the result also serves a partial update. Unknown
    keys (a typo would otherwise be silently ignored) raise ``DiscoTaskError``.
    """
    errors: dict[str, list[str]] = {}
    top = _object(data, "The task", errors)
    _unknown(top, {"id", "displayInformation", "trainingInformation", *_READ_ONLY_KEYS}, "the task", errors)
    values: dict[str, Any] = {}
    if "id" in top:
        values["id"] = top["id"]
    display = _object(top.get("displayInformation"), "displayInformation", errors)
    _unknown(display, {*_DISPLAY_KEYS, "summary"}, "displayInformation", errors)
    values.update({field: display[key] for key, field in _DISPLAY_KEYS.items() if key in display})
    summary = display.get("summary")
    if isinstance(summary, str):  # accept a bare string as the preview
        values["summary_preview"] = summary
    elif summary is not None:
        summary = _object(summary, "displayInformation.summary", errors)
        _unknown(summary, {"preview", "overview"}, "displayInformation.summary", errors)
        if "preview" in summary:
            values["summary_preview"] = summary["preview"]
        if "overview" in summary:
            values["summary_overview"] = summary["overview"]
    training = _object(top.get("trainingInformation"), "trainingInformation", errors)
    _unknown(training, {*_TRAINING_KEYS, "privacy"}, "trainingInformation", errors)
    values.update({field: training[key] for key, field in _TRAINING_KEYS.items() if key in training})
    if "privacy" in training:
        privacy = training["privacy"]
        if privacy is None:
            values.update(clipping_radius=None, noise_scale=None)
        else:
            privacy = _object(privacy, "trainingInformation.privacy", errors)
            _unknown(privacy, {"clippingRadius", "noiseScale"}, "trainingInformation.privacy", errors)
            values.update(clipping_radius=privacy.get("clippingRadius"), noise_scale=privacy.get("noiseScale"))
    for name in ("tokenizer", "data_example_image", "sample_dataset_link"):
        if name in values and values[name] is None:
            values[name] = ""
    if errors:
        raise DiscoTaskError(errors)
    return values
