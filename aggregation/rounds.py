"""The federated round service: joining, submitting updates, quorum, and closing rounds.

Consumers validate and call these functions; only this module and the aggregation task
change rounds. A round closes when every connected participant has contributed, or when
at least ``min_participants`` have and the round's deadline has passed; participants who
leave simply stop counting. Closing hands the round to the ``aggregate_round`` Celery
task after commit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from disco_site.jobs import enqueue_on_commit
from tasks.models import Task

from .admission import check_capacity
from .aggregators.bounds import counted_samples, update_norm
from .codec import TensorSpec, WeightsMessage
from .models import Contribution, Participant, Round


class RoundError(ValueError):
    """An update or request the round cannot take; ``code`` is machine-readable, the message says why."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class RoundStatus:
    round: int
    base_version: int
    participants: int
    contributed: int
    waiting_for: int
    min_participants: int
    deadline: str


def round_deadline_seconds(task: Task) -> float:
    return float(task.round_deadline_seconds)


def group_name(task_id: str) -> str:
    return f"federated.{task_id}"


def _open_round(task: Task, number: int) -> Round:
    deadline = timezone.now() + timedelta(seconds=round_deadline_seconds(task))
    # The deadline is a column: aggregation.sweeper closes the round once it has passed.
    return Round.objects.create(task=task, number=number, base_version=task.current_version, deadline=deadline)


def active_round(task: Task) -> Round:
    """The task's open (or aggregating) round, opening round 1 (or the next) when there is none."""
    if task.current_version_id is None:
        raise RoundError("no_model", f"Task '{task.pk}' has no model yet; try again once its conversion is done.")
    active = [Round.Status.OPEN, Round.Status.AGGREGATING]
    rnd = Round.objects.select_related("base_version").filter(task=task, status__in=active).first()
    if rnd is not None:  # the common case needs no lock
        return rnd
    with transaction.atomic():
        Task.objects.select_for_update().get(pk=task.pk)
        rnd = Round.objects.filter(task=task, status__in=[Round.Status.OPEN, Round.Status.AGGREGATING]).first()
        if rnd is None:
            last = Round.objects.filter(task=task).aggregate(n=Max("number"))["n"] or 0
            rnd = _open_round(task, last + 1)
        return rnd


def expected_specs(rnd: Round) -> list[TensorSpec]:
    specs = rnd.base_version.weight_specs
    not_float = [s["name"] for s in specs if s["dtype"] != "float32"]
    if not_float:
        raise RoundError("unsupported_model", f"Federated rounds exchange float32 weights; {', '.join(not_float)} "
                                              "are not float32.")
    return [TensorSpec(s["name"], tuple(s["shape"])) for s in specs]


def join(task: Task, *, resume_token: str = "", kind: str = Participant.Kind.BROWSER,
         address: str | None = None) -> tuple[Participant, bool]:
    """Register a participant, or reconnect the one ``resume_token`` names. Returns (participant, resumed).

    Under the task's row lock, so the caps of ``admission.check_capacity`` hold however many
    join at once; over a cap it raises ``admission.AdmissionError``.
    """
    with transaction.atomic():
        Task.objects.select_for_update().filter(pk=task.pk).values_list("pk", flat=True).first()
        participant = None
        if resume_token:
            participant = Participant.objects.filter(task=task, resume_token=resume_token).first()
        others = Participant.objects.filter(task=task, connected=True)
        check_capacity(others.exclude(pk=participant.pk) if participant else others, address)
        # An update, not a save: a departed participant pruned meanwhile (prune_finished_rounds) joins anew.
        if participant is not None and Participant.objects.filter(pk=participant.pk).update(
                connected=True, address=address, last_seen=timezone.now()):
            participant.connected, participant.address = True, address
            return participant, True
        participant = Participant.objects.create(task=task, resume_token=secrets.token_urlsafe(32), kind=kind,
                                                 address=address)
        return participant, False


def leave(participant: Participant) -> None:
    """A participant dropped out: it stops counting towards the quorum."""
    Participant.objects.filter(pk=participant.pk).update(connected=False)
    rnd = Round.objects.filter(task_id=participant.task_id, status=Round.Status.OPEN).first()
    if rnd is not None:
        maybe_close(rnd.pk)


def status(task: Task) -> RoundStatus:
    rnd = active_round(task)
    connected = Participant.objects.filter(task=task, connected=True).count()
    return RoundStatus(
        round=rnd.number, base_version=rnd.base_version.number, participants=connected,
        contributed=rnd.contributions.count(), waiting_for=max(0, task.min_participants - connected),
        min_participants=task.min_participants, deadline=rnd.deadline.isoformat(),
    )


def check_update_norm(task: Task, rnd: Round, message: WeightsMessage) -> None:
    """Refuse an update further than the task's ``max_update_norm`` (L2) from the round's base version."""
    limit = task.max_update_norm
    if limit is None:
        return
    from .weights import cached_version_vector

    norm = update_norm(message.vector, cached_version_vector(rnd.base_version))
    if norm > limit:
        raise RoundError("update_norm", f"The update is {norm:.6g} away from version {rnd.base_version.number} "
                                        f"(L2 norm of the change); this task accepts at most {limit:g} "
                                        "(maxUpdateNorm). Train less far from the round's model, or clip the change.")


def submit(participant: Participant, message: WeightsMessage, content: File,
           rnd: Round | None = None) -> Contribution:
    """Store ``participant``'s update to the task's open round (``rnd`` if the caller has it), checking it belongs.

    ``content`` holds the whole weight message ``message`` was decoded from: the received
    bytes (a ``ContentFile``) or a spooled temporary file, which storage moves into place.
    The claimed sample count is stored clamped to the task's ``max_samples_per_update``; an
    update further than ``max_update_norm`` from the base version is refused.
    """
    task = participant.task
    rnd = rnd or active_round(task)
    header = message.header
    if header.get("type") != "update":
        raise RoundError("bad_type", f"Binary frames carry updates (type 'update'); got type {header.get('type')!r}.")
    if header.get("task") != task.pk:
        raise RoundError("wrong_task", f"This connection is for task '{task.pk}', the update names "
                                       f"{header.get('task')!r}.")
    if rnd.status != Round.Status.OPEN or header.get("round") != rnd.number:
        raise RoundError("stale_round", f"Round {header.get('round')!r} is not open; the open round is {rnd.number} "
                                        f"(base version {rnd.base_version.number}): fetch the current model and "
                                        "train from it.")
    if header.get("baseVersion") != rnd.base_version.number:
        raise RoundError("stale_round", f"The update was trained from version {header.get('baseVersion')!r}, but "
                                        f"round {rnd.number} starts from version {rnd.base_version.number}.")
    samples = header.get("samples")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise RoundError("bad_samples", "The update must say how many samples it was trained on (samples >= 1).")
    samples = counted_samples(samples, task.max_samples_per_update)
    check_update_norm(task, rnd, message)
    path = f"contributions/{task.pk}/{rnd.number}/{participant.pk}-{secrets.token_hex(4)}.frame"
    saved = default_storage.save(path, content)
    try:
        with transaction.atomic():
            locked = Round.objects.select_for_update().get(pk=rnd.pk)
            if locked.status != Round.Status.OPEN:
                raise RoundError("stale_round", f"Round {locked.number} closed while the update arrived.")
            contribution = Contribution.objects.create(round=locked, participant=participant, samples=samples,
                                                       blob=saved, nbytes=content.size)
    except IntegrityError:
        default_storage.delete(saved)
        raise RoundError("duplicate", f"You already sent an update for round {rnd.number}; wait for it to close."
                         ) from None
    except BaseException:
        default_storage.delete(saved)
        raise
    maybe_close(rnd.pk)
    return contribution


def maybe_close(round_id: int, *, now=None) -> bool:
    """Close the round if its quorum is met; returns whether it closed (and aggregation was queued)."""
    from .tasks import aggregate_round

    now = now or timezone.now()
    with transaction.atomic():
        rnd = Round.objects.select_for_update().select_related("task").filter(pk=round_id).first()
        if rnd is None or rnd.status != Round.Status.OPEN:
            return False
        contributors = set(rnd.contributions.values_list("participant_id", flat=True))
        connected = set(Participant.objects.filter(task=rnd.task, connected=True).values_list("pk", flat=True))
        enough = len(contributors) >= rnd.task.min_participants
        everyone = bool(contributors) and connected <= contributors
        if not enough or not (everyone or now >= rnd.deadline):
            return False
        # aggregating_since starts the clock of DISCO_AGGREGATION_STUCK_AFTER (aggregation.sweeper).
        rnd.status, rnd.aggregating_since = Round.Status.AGGREGATING, now
        rnd.save(update_fields=["status", "aggregating_since"])
        enqueue_on_commit(aggregate_round, rnd.pk)
    return True


def fail_round(round_id: int, reason: str) -> bool:
    """Mark an aggregating round failed with ``reason`` (plain words); False if it is no longer aggregating."""
    return bool(Round.objects.filter(pk=round_id, status=Round.Status.AGGREGATING).update(
        status=Round.Status.FAILED, message=reason, closed_at=timezone.now()))


def prune_finished_rounds(task_id: str) -> tuple[int, int]:
    """Delete the stored updates of the task's finished rounds but the ``DISCO_KEEP_CONTRIBUTION_ROUNDS``
    most recent, and the participants that left and have nothing left in any round.

    Called after a round's version is committed (never before: until then a re-run needs the
    frames). Idempotent: files go first, then their rows, so a run cut short is finished by
    the next one, and a file already gone is no error. Returns (contributions, participants) deleted.
    """
    keep = max(0, int(settings.DISCO_KEEP_CONTRIBUTION_ROUNDS))
    finished = Round.objects.filter(task_id=task_id, status__in=[Round.Status.CLOSED, Round.Status.FAILED])
    kept = list(finished.order_by("-number").values_list("pk", flat=True)[:keep])
    old = Contribution.objects.filter(round__in=finished.exclude(pk__in=kept))
    doomed = list(old.values_list("pk", "blob", "round__number"))
    for _, blob, _ in doomed:
        default_storage.delete(blob)
    for number in sorted({n for _, _, n in doomed}):
        _remove_empty_folder(f"contributions/{task_id}/{number}")
    Contribution.objects.filter(pk__in=[pk for pk, _, _ in doomed]).delete()
    # A participant row is made per connection (unless it resumes): once it has left and has no
    # update in any kept round nor a decentralized turn, nothing refers to it. A later resume with
    # its token simply joins as a new participant.
    gone, _ = (Participant.objects.filter(task_id=task_id, connected=False, contributions__isnull=True,
                                          peer_turns__isnull=True).delete())
    return len(doomed), gone


def _remove_empty_folder(folder: str) -> None:
    """Best effort: storages without folders (object storage) have nothing to remove."""
    with contextlib.suppress(NotImplementedError, OSError):
        os.rmdir(default_storage.path(folder))


def max_frame_bytes() -> int:
    return settings.DISCO_MAX_MODEL_BYTES + 64 * 1024


def max_update_bytes(rnd: Round) -> int:
    """The largest update ``rnd`` can take: its model's float32 weights plus room for the header
    (64 KiB and 256 bytes per tensor), never more than ``max_frame_bytes()``."""
    version = rnd.base_version
    header = 64 * 1024 + 256 * len(version.weight_specs)
    return min(max_frame_bytes(), 4 * version.parameter_count + header)
