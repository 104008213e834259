"""The catalogue's tables: ML tasks, their immutable model versions and conversion jobs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from .choices import (
    Aggregator,
    Compression,
    DataType,
    Origin,
    Participation,
    Scheme,
    ServerOptimizer,
    Tokenizer,
)
from .rich_text import RICH_TEXT_FIELDS, sanitize_html
from .spec import SPEC_FIELDS
from .validation import validate_task_fields


class TaskQuerySet(models.QuerySet):
    def published(self) -> TaskQuerySet:
        return self.filter(published=True)

    def visible_to(self, user: Any) -> TaskQuerySet:
        """Published tasks, plus the user's own; administrators see everything."""
        if user is not None and user.is_authenticated:
            if user.is_staff:
                return self.all()
            return self.filter(models.Q(published=True) | models.Q(owner=user))
        return self.published()


class Task(models.Model):
    """A collaborative learning job, with DISCO's display and training information."""

    id = models.CharField(primary_key=True, max_length=64, help_text="Short identifier used in URLs, e.g. 'titanic'.")
    # Display information
    title = models.CharField(max_length=200)
    summary_preview = models.CharField(max_length=500, help_text="One line shown on the task card.")
    summary_overview = models.TextField(blank=True, help_text="What the task is about (simple HTML allowed; "
                                                              "anything else is removed when saved).")
    model_description = models.TextField(blank=True, help_text="What the model is (simple HTML allowed; "
                                                               "anything else is removed when saved).")
    data_format = models.TextField(blank=True, help_text="What data a participant connects, and how.")
    data_example_text = models.TextField(blank=True)
    data_example = models.JSONField(default=list, blank=True, help_text='[{"columnName": ..., "columnData": ...}]')
    data_example_image = models.CharField(max_length=500, blank=True)
    sample_dataset_link = models.CharField(max_length=500, blank=True)
    sample_dataset_instructions = models.TextField(blank=True)
    # Training information
    data_type = models.CharField(max_length=16, choices=DataType.choices)
    scheme = models.CharField(max_length=16, choices=Scheme.choices, default=Scheme.FEDERATED)
    epochs = models.PositiveIntegerField(default=10)
    round_duration = models.PositiveIntegerField(default=2, help_text="Epochs between two weight exchanges.")
    batch_size = models.PositiveIntegerField(default=32)
    validation_split = models.FloatField(default=0.2)
    min_participants = models.PositiveIntegerField(default=2, verbose_name="minimum number of participants")
    image_height = models.PositiveIntegerField(null=True, blank=True, verbose_name="IMAGE_H")
    image_width = models.PositiveIntegerField(null=True, blank=True, verbose_name="IMAGE_W")
    image_channels = models.PositiveSmallIntegerField(null=True, blank=True)
    labels = models.JSONField(default=list, blank=True, verbose_name="LABEL_LIST")
    input_columns = models.JSONField(default=list, blank=True)
    output_columns = models.JSONField(default=list, blank=True)
    preprocessing = models.JSONField(default=list, blank=True, help_text="Preprocessing step names, in order.")
    tokenizer = models.CharField(max_length=32, blank=True, choices=Tokenizer.choices)
    max_sequence_length = models.PositiveIntegerField(null=True, blank=True)
    clipping_radius = models.FloatField(null=True, blank=True, help_text="Differential privacy: L2 clipping norm.")
    noise_scale = models.FloatField(null=True, blank=True, help_text="Differential privacy: noise multiplier.")
    max_share_value = models.FloatField(default=100.0, help_text="Secure aggregation: range of the shared values.")
    aggregator = models.CharField(max_length=32, choices=Aggregator.choices, default=Aggregator.MEAN)
    aggregator_params = models.JSONField(default=dict, blank=True)
    server_optimizer = models.CharField(
        max_length=32, choices=ServerOptimizer.choices, default=ServerOptimizer.NONE,
        help_text="Federated rounds: a step the server takes from the round's base model along the aggregate's "
                  "change (none: the aggregate becomes the new model).")
    server_optimizer_params = models.JSONField(
        default=dict, blank=True, help_text='The server optimizer\'s parameters, e.g. {"lr": 1.0, "momentum": 0.9}.')
    round_deadline_seconds = models.PositiveIntegerField(
        default=120, help_text="Federated rounds close this many seconds after they open once the minimum "
                               "number of participants has contributed, without waiting for slower ones.")
    allow_relay = models.BooleanField(
        default=True, help_text="Decentralized rounds: let the server pass peers' opaque messages along when they "
                                "cannot connect directly (it forwards them without reading them).")
    participation = models.CharField(
        max_length=16, choices=Participation.choices, default=Participation.OPEN,
        help_text="Who may take part: anyone with the link, anyone signed in, or only people the owner invited.")
    invitation_secret = models.CharField(
        max_length=64, blank=True, editable=False,
        help_text="The secret of the invitation link (invited tasks); rotating it invalidates old links.")
    max_samples_per_update = models.PositiveIntegerField(
        default=100_000, help_text="Federated rounds: the largest sample count an update may claim; "
                                   "larger claims are lowered to it.")
    max_contribution_share = models.FloatField(
        default=0.25, help_text="Federated rounds: the largest share of the aggregate's weight one update may get "
                                "(1 = no cap). With few contributors every update gets an equal share.")
    max_update_norm = models.FloatField(
        null=True, blank=True, help_text="Federated rounds: refuse updates whose L2 distance from the round's base "
                                         "model exceeds this (empty = no bound).")
    compression = models.CharField(
        max_length=8, choices=Compression.choices, default=Compression.FLOAT32,
        help_text="Federated rounds: how participants encode their updates. Smaller updates lose precision; the "
                  "server accepts this encoding or a more exact one.")
    participants_per_round = models.PositiveIntegerField(
        null=True, blank=True, help_text="Federated rounds: invite this many of the connected participants to each "
                                         "round (random, those who waited longest first); empty: everyone.")
    # Catalogue bookkeeping
    published = models.BooleanField(default=False)
    review_requested_at = models.DateTimeField(
        null=True, blank=True, verbose_name="awaiting review since",
        help_text="Set when a contributor creates the task or changes a published one; publishing clears it.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="tasks")
    provider = models.CharField(max_length=200, blank=True, help_text="Task provider id when defined in code.")
    current_version = models.ForeignKey("ModelVersion", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return f"{self.title} ({self.id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Every writer (form, API, admin, providers) ends here: the stored HTML is already clean,
        # so the API hands DISCO-style clients nothing a browser could run (tasks.rich_text).
        for name in RICH_TEXT_FIELDS:
            setattr(self, name, sanitize_html(getattr(self, name) or ""))
        # An invitation-only task always has a secret; any other has none, so that switching back to
        # invitations makes a new link rather than reviving old ones.
        invited = self.participation == Participation.INVITED
        if invited != bool(self.invitation_secret):
            from .participation import new_invitation_secret

            self.invitation_secret = new_invitation_secret() if invited else ""
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "invitation_secret"}
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("tasks:detail", args=[self.id])

    def spec_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SPEC_FIELDS}

    def _current_version_fit_errors(self) -> dict[str, list[str]]:
        """When an edit changes the shape settings or the current version, the version must fit the settings."""
        from .model_fit import shape_settings_changed, version_fit_problems

        stored = Task.objects.filter(pk=self.pk).first()
        if stored is None or (stored.current_version_id == self.current_version_id
                              and not shape_settings_changed(stored.spec_values(), self.spec_values())):
            return {}
        problems = version_fit_problems(self.current_version, self.spec_values())
        number = self.current_version.number
        return {"current_version": [f"Version {number} does not fit these settings: {p}" for p in problems]
                } if problems else {}

    def clean(self) -> None:
        errors = validate_task_fields(self.spec_values())
        if self.current_version_id and self.current_version.task_id != self.id:
            errors.setdefault("current_version", []).append("The current version must be one of this task's versions.")
        if not errors and self.current_version_id:
            errors.update(self._current_version_fit_errors())
        if errors:
            raise ValidationError(errors)

    def model_url(self) -> str:
        return reverse("tasks:model-json", args=[self.id])


class ModelVersion(models.Model):
    """One immutable TF.js LayersModel of a task: model.json + shards in media storage."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    origin = models.CharField(max_length=16, choices=Origin.choices)
    round_number = models.PositiveIntegerField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    sha256 = models.CharField(max_length=64)
    storage_dir = models.CharField(max_length=300, help_text="Folder in media storage holding the files.")
    files = models.JSONField(help_text='[{"name", "size", "sha256"}] with model.json first.')
    weight_specs = models.JSONField(help_text='[{"name", "shape", "dtype"}] in manifest order.')
    parameter_count = models.BigIntegerField()
    total_bytes = models.BigIntegerField()
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "-number"]
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="unique_version_number_per_task")]

    def __str__(self) -> str:
        return f"{self.task_id} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValidationError("Model versions are immutable: create a new version instead of changing this one.")
        super().save(*args, **kwargs)

    def file_names(self) -> list[str]:
        return [f["name"] for f in self.files]

    def storage_path(self, name: str) -> str:
        return f"{self.storage_dir}/{name}"

    def url(self, name: str = "model.json") -> str:
        return reverse("tasks:version-file", args=[self.task_id, self.number, name])


class ConversionJob(models.Model):
    """Making a model version from a provider's Keras model (or, later, an upload), in a Celery worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="conversion_jobs")
    source = models.CharField(max_length=200, help_text="What is converted, e.g. 'provider:titanic'.")
    source_file = models.CharField(max_length=300, blank=True, help_text="Uploaded model file in media storage.")
    source_kind = models.CharField(max_length=32, blank=True,
                                   help_text="What the uploaded file is: keras_h5, keras_v3, saved_model, ...")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)
    result = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Re-queues after the job was found stuck "
                                                                     "running (sweeper) or orphaned by a restart.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "started_at"], name="conversion_job_status")]  # the sweeper

    def __str__(self) -> str:
        return f"{self.source} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)
