"""Django admin for the collaboration engine: rounds, updates, decentralized rounds, participants and their
evaluation reports.

Read only: rounds change only through ``aggregation.rounds`` and ``aggregation.peer_rounds``, so
administrators may look (lists, filters, search, each row's page) but not add, change or delete.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from .models import Contribution, Evaluation, Participant, PeerRound, PeerTurn, Round


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff with the view permission; nothing can be added, changed or deleted."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _version_link(version: Any) -> str:
    if version is None:
        return "—"
    return format_html('<a href="{}">v{}</a>', version.url(), version.number)


def _duration(start: Any, end: Any) -> str:
    if start is None or end is None:
        return "—"
    seconds = (end - start).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class ContributionInline(ReadOnlyInline):
    model = Contribution
    fields = ["participant", "samples", "nbytes", "received_at"]
    readonly_fields = fields


class EvaluationInline(ReadOnlyInline):
    """The reports the round's validation metrics (``val_*``) average."""

    model = Evaluation
    fields = ["participant", "loss", "accuracy", "samples", "reported_at"]
    readonly_fields = fields
    show_change_link = False


@admin.register(Round)
class RoundAdmin(ReadOnlyAdmin):
    list_display = ["number", "task", "status", "contributor_count", "received", "duration", "base", "result",
                    "opened_at", "closed_at", "short_message"]
    list_display_links = ["number"]
    list_filter = ["status", "task", "opened_at", "closed_at"]
    search_fields = ["task__id", "task__title", "message"]
    date_hierarchy = "opened_at"
    list_select_related = ["task", "base_version", "result_version"]
    readonly_fields = ["task", "number", "status", "message", "opened_at", "deadline", "closed_at", "base",
                       "result", "contributor_count", "received", "aggregator", "aggregating_since",
                       "aggregation_attempts", "val_loss", "val_accuracy", "val_samples"]
    fields = readonly_fields
    inlines = [ContributionInline, EvaluationInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Round]:
        return super().get_queryset(request).annotate(live_contributors=Count("contributions"),
                                                      live_bytes=Sum("contributions__nbytes"))

    @admin.display(description="contributors")
    def contributor_count(self, rnd: Round) -> int:
        return rnd.contributors if rnd.contributors is not None else rnd.live_contributors

    @admin.display(description="bytes received")
    def received(self, rnd: Round) -> str:
        nbytes = rnd.bytes_received if rnd.bytes_received is not None else rnd.live_bytes
        return filesizeformat(nbytes or 0)

    @admin.display(description="duration")
    def duration(self, rnd: Round) -> str:
        return _duration(rnd.opened_at, rnd.closed_at)

    @admin.display(description="base version")
    def base(self, rnd: Round) -> str:
        return _version_link(rnd.base_version)

    @admin.display(description="result version")
    def result(self, rnd: Round) -> str:
        return _version_link(rnd.result_version)

    @admin.display(description="message")
    def short_message(self, rnd: Round) -> str:
        return rnd.message if len(rnd.message) <= 90 else rnd.message[:89] + "…"


@admin.register(Contribution)
class ContributionAdmin(ReadOnlyAdmin):
    list_display = ["id", "round_link", "task", "participant", "samples", "size", "received_at"]
    list_filter = ["round__task", "round__status", "participant__kind", "received_at"]
    search_fields = ["round__task__id", "participant__id"]
    list_select_related = ["round", "round__task", "participant"]
    date_hierarchy = "received_at"
    readonly_fields = ["round", "participant", "samples", "nbytes", "blob", "received_at"]
    fields = readonly_fields

    @admin.display(description="round", ordering="round__number")
    def round_link(self, contribution: Contribution) -> str:
        url = reverse("admin:aggregation_round_change", args=[contribution.round_id])
        return format_html('<a href="{}">{}</a>', url, contribution.round.number)

    @admin.display(description="task", ordering="round__task")
    def task(self, contribution: Contribution) -> str:
        return contribution.round.task_id

    @admin.display(description="bytes", ordering="nbytes")
    def size(self, contribution: Contribution) -> str:
        return filesizeformat(contribution.nbytes)


class PeerTurnInline(ReadOnlyInline):
    model = PeerTurn
    fields = ["participant", "ready_at", "selected", "done_at", "left_at"]
    readonly_fields = fields


@admin.register(PeerRound)
class PeerRoundAdmin(ReadOnlyAdmin):
    list_display = ["number", "task", "status", "selected_peers", "dropouts", "duration", "opened_at", "closed_at",
                    "message"]
    list_display_links = ["number"]
    list_filter = ["status", "task", "opened_at", "closed_at"]
    search_fields = ["task__id", "task__title", "message"]
    date_hierarchy = "opened_at"
    list_select_related = ["task"]
    readonly_fields = ["task", "number", "status", "message", "opened_at", "ready_deadline", "started_at",
                       "exchange_deadline", "closed_at", "agreed", "val_loss", "val_accuracy", "val_samples"]
    fields = readonly_fields
    inlines = [PeerTurnInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PeerRound]:
        selected = Q(turns__selected=True)
        return super().get_queryset(request).annotate(
            n_selected=Count("turns", filter=selected),
            n_dropped=Count("turns", filter=selected & Q(turns__left_at__isnull=False)))

    @admin.display(description="selected peers", ordering="n_selected")
    def selected_peers(self, rnd: PeerRound) -> int:
        return rnd.n_selected

    @admin.display(description="dropouts", ordering="n_dropped")
    def dropouts(self, rnd: PeerRound) -> int:
        return rnd.n_dropped

    @admin.display(description="duration")
    def duration(self, rnd: PeerRound) -> str:
        return _duration(rnd.opened_at, rnd.closed_at)


@admin.register(Participant)
class ParticipantAdmin(ReadOnlyAdmin):
    list_display = ["short_id", "task", "kind", "connected", "address", "joined_at", "last_seen", "updates"]
    list_filter = ["connected", "kind", "task", "joined_at", "last_seen"]
    search_fields = ["id", "task__id", "address"]
    list_select_related = ["task"]
    date_hierarchy = "joined_at"
    # The resume token is a credential: never shown.
    readonly_fields = ["id", "task", "kind", "connected", "address", "joined_at", "last_seen"]
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Participant]:
        return super().get_queryset(request).annotate(n_updates=Count("contributions"))

    @admin.display(description="participant", ordering="id")
    def short_id(self, participant: Participant) -> str:
        return str(participant.pk)[:8]

    @admin.display(description="updates stored", ordering="n_updates")
    def updates(self, participant: Participant) -> int:
        return participant.n_updates


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdmin):
    """Every evaluation report: one participant's scores of one finished round's model (numbers only)."""

    list_display = ["id", "task", "scheme", "round_number", "participant", "loss", "accuracy", "samples",
                    "reported_at"]
    list_filter = ["round__task", "peer_round__task", "reported_at"]
    search_fields = ["round__task__id", "peer_round__task__id", "participant__id"]
    list_select_related = ["round", "peer_round", "participant"]
    date_hierarchy = "reported_at"
    readonly_fields = ["round", "peer_round", "participant", "loss", "accuracy", "samples", "reported_at"]
    fields = readonly_fields

    @admin.display(description="task")
    def task(self, evaluation: Evaluation) -> str:
        return (evaluation.round or evaluation.peer_round).task_id

    @admin.display(description="scheme")
    def scheme(self, evaluation: Evaluation) -> str:
        return "federated" if evaluation.round_id else "decentralized"

    @admin.display(description="round")
    def round_number(self, evaluation: Evaluation) -> int:
        return (evaluation.round or evaluation.peer_round).number
