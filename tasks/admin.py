"""Django admin for curators: tasks (with versions and rollback), versions, conversion jobs."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from aggregation.aggregators.registry import AGGREGATORS, SERVER_OPTIMIZERS

from .models import ConversionJob, ModelVersion, Task
from .participation import invitation_path, rotate_invitation
from .versions import VersionError, set_current_version


class TaskAdminForm(forms.ModelForm):
    """Task form whose cross-field errors land on a visible field, or at the top of the form."""

    class Meta:
        model = Task
        fields = "__all__"  # noqa: DJ007 - TaskAdmin.fieldsets choose and order the fields

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # What each choice takes, from the registry the validation uses.
        for name, entries in (("aggregator_params", AGGREGATORS), ("server_optimizer_params", SERVER_OPTIMIZERS)):
            if name in self.fields:
                self.fields[name].help_text = "A JSON object. " + "; ".join(
                    f"{e.name}: " + ", ".join(f"{p.name} ({p.range_text()}, e.g. {p.default})" for p in e.params)
                    for e in entries.values() if e.params) + "; the others take {}."

    def _update_errors(self, errors: ValidationError) -> None:
        # Model.clean() names fields the form may not show (e.g. read-only ones): those
        # messages go to the top of the form instead of raising "has no field named".
        if hasattr(errors, "error_dict"):
            shown = {k: v for k, v in errors.error_dict.items() if k in self.fields or k == NON_FIELD_ERRORS}
            hidden = [m for k, v in errors.error_dict.items() if k not in shown for m in v]
            if hidden:
                shown.setdefault(NON_FIELD_ERRORS, []).extend(hidden)
            errors = ValidationError(shown)
        super()._update_errors(errors)


class ReviewFilter(admin.SimpleListFilter):
    """Tasks a contributor created or changed since an administrator last published them."""

    title = "review"
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("awaiting", "Awaiting review"), ("reviewed", "Reviewed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        if self.value() == "awaiting":
            return queryset.filter(review_requested_at__isnull=False)
        if self.value() == "reviewed":
            return queryset.filter(review_requested_at__isnull=True)
        return queryset


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    fk_name = "task"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["number", "origin", "round_number", "parameter_count", "total_bytes", "sha256", "created_at",
              "make_current"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False

    @admin.display(description="current / roll back")
    def make_current(self, version: ModelVersion) -> str:
        if version.task.current_version_id == version.pk:
            return format_html("<strong>current</strong>")
        url = reverse("admin:tasks_task_set_version", args=[version.task_id, version.number])
        return format_html(
            '<button type="submit" form="set-version-form" formaction="{}" class="button">Make current</button>', url
        )


class ConversionJobInline(admin.TabularInline):
    model = ConversionJob
    extra = 0
    can_delete = False
    fields = ["source", "status", "message", "created_at", "finished_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    form = TaskAdminForm
    change_form_template = "admin/tasks/task/change_form.html"
    list_display = ["id", "title", "scheme", "data_type", "published", "awaiting_review", "current_version_number",
                    "owner"]
    list_filter = [ReviewFilter, "scheme", "data_type", "published", "aggregator", "server_optimizer"]
    search_fields = ["id", "title", "summary_preview"]
    actions = ["publish", "unpublish", "rotate_invitation"]
    readonly_fields = ["current_version", "provider", "review_requested_at", "invitation_link", "created_at",
                       "updated_at"]
    inlines = [ModelVersionInline, ConversionJobInline]
    fieldsets = [
        (None, {"fields": ["id", "title", "published", "review_requested_at", "owner", "provider",
                           "current_version"]}),
        ("Description", {"fields": ["summary_preview", "summary_overview", "model_description", "data_format",
                                    "data_example_text", "data_example", "data_example_image",
                                    "sample_dataset_link", "sample_dataset_instructions"]}),
        ("Training", {"fields": ["data_type", "scheme", "epochs", "round_duration", "batch_size",
                                 "validation_split", "min_participants", "preprocessing"]}),
        ("Images", {"fields": ["image_height", "image_width", "image_channels", "labels"]}),
        ("Tabular", {"fields": ["input_columns", "output_columns"]}),
        ("Text", {"fields": ["tokenizer", "max_sequence_length"]}),
        ("Aggregation and privacy", {"fields": ["aggregator", "aggregator_params", "server_optimizer",
                                                "server_optimizer_params", "round_deadline_seconds",
                                                "allow_relay", "clipping_radius", "noise_scale",
                                                "max_share_value"]}),
        ("Participation", {"fields": ["participation", "invitation_link", "max_samples_per_update",
                                      "max_contribution_share", "max_update_norm", "compression",
                                      "participants_per_round"]}),
        ("Dates", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> list[str]:
        return [*self.readonly_fields, "id"] if obj is not None else list(self.readonly_fields)

    @admin.display(description="version", ordering="current_version__number")
    def current_version_number(self, task: Task) -> int | None:
        return task.current_version.number if task.current_version_id else None

    @admin.display(description="awaiting review since", ordering="review_requested_at", empty_value="—")
    def awaiting_review(self, task: Task) -> Any:
        return task.review_requested_at

    def save_model(self, request: HttpRequest, obj: Task, form: forms.ModelForm, change: bool) -> None:
        # An administrator who publishes a task from its page has reviewed it.
        if obj.published:
            obj.review_requested_at = None
        super().save_model(request, obj, form, change)

    @admin.display(description="invitation link")
    def invitation_link(self, task: Task) -> str:
        return invitation_path(task) or "(none: the task is not invitation-only)"

    @admin.action(description="Rotate the invitation link of the selected tasks (old links stop working)")
    def rotate_invitation(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        for task in queryset:
            rotate_invitation(task)
        self.message_user(request, f"New invitation links for {queryset.count()} task(s).", messages.SUCCESS)

    @admin.action(description="Publish the selected tasks (marks them reviewed)")
    def publish(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        count = queryset.update(published=True, review_requested_at=None)
        self.message_user(request, f"Published {count} task(s).", messages.SUCCESS)

    @admin.action(description="Unpublish the selected tasks")
    def unpublish(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        count = queryset.update(published=False)
        self.message_user(request, f"Unpublished {count} task(s).", messages.SUCCESS)

    def get_urls(self):
        view = self.admin_site.admin_view(require_POST(self.set_version_view))
        return [path("<str:task_id>/set-version/<int:number>/", view, name="tasks_task_set_version"),
                *super().get_urls()]

    def set_version_view(self, request: HttpRequest, task_id: str, number: int) -> HttpResponseRedirect:
        task = get_object_or_404(Task, pk=task_id)
        change_url = reverse("admin:tasks_task_change", args=[task_id])
        if not self.has_change_permission(request, task):
            self.message_user(request, "You may not change this task.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        previous = task.current_version.number if task.current_version_id else None
        try:
            version = set_current_version(task, number)
        except VersionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(change_url)
        self.log_change(request, task, f"Current model version {previous} -> {version.number}")
        self.message_user(request, f"{task_id} now serves version {version.number} (was {previous}).",
                          messages.SUCCESS)
        return HttpResponseRedirect(change_url)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["task", "number", "origin", "round_number", "parameter_count", "total_bytes", "created_at"]
    list_filter = ["origin", "task"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return False


@admin.register(ConversionJob)
class ConversionJobAdmin(admin.ModelAdmin):
    list_display = ["task", "source", "status", "short_message", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in ConversionJob._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="message")
    def short_message(self, job: ConversionJob) -> str:
        return job.message[:120]
