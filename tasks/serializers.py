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
            "owner": task.owner.get_username() if task.owner_id else None,
            "currentVersion": version.number if version else None,
            "modelUrl": _absolute(request, task.model_url()) if version else None,
            "versionsUrl": _absolute(request, f"/api/tasks/{task.id}/versions/"),
        }
