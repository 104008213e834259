"""The federated round service: the one owner of a federated round's lifecycle.

Every status change of a ``Round`` happens here, each in one transaction, and every
broadcast to the task's channel group goes out after that transaction commits:

- ``active_round`` opens round 1 (or the next) from the task's current version, read fresh
  under the task's row lock;
- ``submit`` stores an update in the open round; ``maybe_close`` / ``close_if_due`` close the
  round (``open`` -> ``aggregating``) when its quorum is met, and queue ``aggregate_round``;
- ``finish`` stores the round's aggregate as a version and makes it current only if the task's
  current version is still the round's base (compare-and-swap under the task's lock): the round is
  ``closed``, or ``superseded`` when a rollback or an upload made another version current meanwhile;
- ``fail`` marks the round ``failed`` only if it is still in the status it leaves, announces
  ``round_failed`` and opens the next round from the last good version.

A round closes when every connected participant it invited has contributed, or when at least
``min_participants`` have and the round's deadline has passed; participants who leave
simply stop counting. Without ``participants_per_round`` (K) everyone is invited; with it, ``_open_round``
invites K of the connected participants (``choose_invited``: those invited least recently first, ties
in an order seeded by the task and round number), a joiner is invited while the round has room, and
an update from anyone else is refused (``not_invited``). The Celery tasks (``aggregation.tasks``) only
read the stored updates and compute; they call ``finish`` or ``fail``. This module queues them by name
through ``disco_site.jobs`` and never imports them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Count, Max, PositiveIntegerField, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from disco_client.codec import TensorSpec, WeightsMessage
from disco_site.jobs import enqueue_named_on_commit
from tasks.choices import Origin
from tasks.models import Task
from tasks.tfjs_format import LayersModelArtifacts
from tasks.versions import create_version, delete_files

from . import optimizer_state
from .admission import check_capacity
from .aggregators.bounds import counted_samples, update_norm
from .broadcast import send_to_group_on_commit
from .models import Contribution, Participant, Round
from .optimizer_state import ServerStep
from .weights import cached_version_vector

log = logging.getLogger(__name__)

# The Celery tasks this service queues, by name (aggregation/tasks.py defines them).
AGGREGATE_ROUND = "aggregation.tasks.aggregate_round"

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
    participants_per_round: int | None = None
    # The round's invited participant ids; None: everyone. Never sent as such: each connection hears
    # only whether it is invited (``invited_for``).
    invited_ids: tuple[str, ...] | None = None

    def fields(self) -> dict[str, Any]:
        """The wire names (``welcome``, ``status``, ``participants`` messages)."""
        return {"round": self.round, "currentVersion": self.base_version, "participants": self.participants,
                "contributed": self.contributed, "waitingFor": self.waiting_for,
                "minParticipants": self.min_participants, "deadline": self.deadline,
                "participantsPerRound": self.participants_per_round}

    def invited_for(self, participant_id: Any) -> bool:
        return is_invited(self.invited_ids, participant_id)


def is_invited(invited_ids: Iterable[str] | None, participant_id: Any) -> bool:
    """Whether ``participant_id`` is among a round's invited ids (None: the round invites everyone)."""
    return invited_ids is None or str(participant_id) in invited_ids


def round_deadline_seconds(task: Task) -> float:
    return float(task.round_deadline_seconds)


def group_name(task_id: str) -> str:
    return f"federated.{task_id}"


def _notify_on_commit(task_id: str, event: dict[str, Any]) -> None:
    send_to_group_on_commit(group_name(task_id), event)


def _locked_task(task_id: str) -> Task:
    """The task's row, locked, with its current version as the database holds it now (never a cached object)."""
    return Task.objects.select_for_update(of=("self",)).select_related("current_version").get(pk=task_id)


def choose_invited(task_id: str, number: int, candidates: Iterable[tuple[Any, int | None]], k: int) -> list[str]:
    """The ids of the ``k`` participants to invite to round ``number`` among ``candidates`` (id, last round
    invited to): those invited least recently first (never invited counts as round 0), ties broken by a
    shuffle seeded by the task and round number, so the same inputs always give the same choice."""
    last = {str(pk): last_round or 0 for pk, last_round in candidates}
    order = sorted(last)
    # Not for security: a fair, reproducible order (a str seed is hashed the same way in every process).
    random.Random(f"{task_id}/{number}").shuffle(order)
    order.sort(key=last.__getitem__)  # stable: equal waits keep the seeded order
    return order[:max(0, k)]


def _invite(rnd: Round, k: int) -> list[str]:
    """Invite up to ``k`` more connected, not yet invited participants of ``rnd``'s task to it (the caller
    holds the round's row lock, or is creating it); record their ``last_invited_round``. Returns their ids."""
    taken = set(rnd.invited or [])
    candidates = (Participant.objects.filter(task_id=rnd.task_id, connected=True).exclude(pk__in=taken)
                  .values_list("pk", "last_invited_round"))
    chosen = choose_invited(rnd.task_id, rnd.number, candidates, k)
    if chosen:
        Participant.objects.filter(pk__in=chosen).update(last_invited_round=rnd.number)
    rnd.invited = [*(rnd.invited or []), *chosen]
    return chosen


def _open_round(locked: Task, number: int) -> Round:
    """Open round ``number`` from ``locked``'s current version; ``locked`` comes from ``_locked_task``.

    A task with ``participants_per_round`` (K) invites K of its connected participants in the same
    transaction (``choose_invited``); without it the round invites everyone (``invited`` is null)."""
    deadline = timezone.now() + timedelta(seconds=round_deadline_seconds(locked))
    # The deadline is a column: aggregation.sweeper closes the round once it has passed.
    rnd = Round(task=locked, number=number, base_version=locked.current_version, deadline=deadline)
    if locked.participants_per_round:
        _invite(rnd, locked.participants_per_round)
    rnd.save(force_insert=True)
    return rnd


def fill_invitations(task_id: str) -> list[str]:
    """Invite connected participants to the task's open round while it has fewer than K invitations in use
    (invited participants still connected, or who already contributed): a joiner is invited at once when
    there is room, and one who leaves before contributing frees a place. Returns the ids invited now."""
    sampled = Round.objects.filter(task_id=task_id, status=Round.Status.OPEN, invited__isnull=False)
    if not sampled.exists():  # no lock for tasks that invite everyone
        return []
    with transaction.atomic():
        rnd = (Round.objects.select_for_update(of=("self",)).select_related("task")
               .filter(task_id=task_id, status=Round.Status.OPEN).first())
        if rnd is None or rnd.invited is None or not rnd.task.participants_per_round:
            return []
        connected = Participant.objects.filter(task_id=task_id, connected=True, pk__in=rnd.invited)
        in_use = {str(pk) for pk in connected.values_list("pk", flat=True)}
        in_use |= {str(pk) for pk in rnd.contributions.values_list("participant_id", flat=True)}
        room = rnd.task.participants_per_round - len(in_use)
        if room <= 0:
            return []
        chosen = _invite(rnd, room)
        if chosen:
            rnd.save(update_fields=["invited"])
        return chosen


def active_round(task: Task) -> Round:
    """The task's open (or aggregating) round, opening round 1 (or the next) when there is none.

    A round is opened from the task's current version read fresh under the task's row lock, so a
    version made current meanwhile (a rollback, an upload, a failed round's successor) is the base.
    """
    active = [Round.Status.OPEN, Round.Status.AGGREGATING]
    rnd = Round.objects.select_related("base_version").filter(task=task, status__in=active).first()
    if rnd is not None:  # the common case needs no lock
        return rnd
    with transaction.atomic():
        locked = _locked_task(task.pk)
        if locked.current_version_id is None:
            raise RoundError("no_model", f"Task '{task.pk}' has no model yet; try again once its conversion is done.")
        rnd = Round.objects.select_related("base_version").filter(task=locked, status__in=active).first()
        if rnd is None:
            last = Round.objects.filter(task=locked).aggregate(n=Max("number"))["n"] or 0
            rnd = _open_round(locked, last + 1)
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


def enter(task: Task, *, resume_token: str = "", kind: str = Participant.Kind.BROWSER,
          address: str | None = None, announce: bool = True) -> tuple[Participant, bool, RoundStatus]:
    """A federated participant joins (``join``); returns (participant, resumed, the round's status) and tells
    the task's group how many take part now (``announce=False``: the caller tells it, see
    ``broadcast.PARTICIPANT_NEWS``)."""
    participant, resumed = join(task, resume_token=resume_token, kind=kind, address=address)
    active_round(task)  # a first participant opens round 1 (and is invited to it)
    fill_invitations(task.pk)
    state = status(task)
    if announce:
        _notify_on_commit(task.pk, _participants_event(state))
    return participant, resumed, state


def _participants_event(state: RoundStatus) -> dict[str, Any]:
    """``participants.changed`` with the round's status; the invited ids go to the consumers, which tell each
    connection only whether it is invited."""
    invited = list(state.invited_ids) if state.invited_ids is not None else None
    return {"type": "participants.changed", **state.fields(), "invited": invited}


def participants_event(task_id: str) -> dict[str, Any]:
    """What the task's group is told of who takes part, as it stands now."""
    return _participants_event(status(Task.objects.get(pk=task_id)))


def leave(participant: Participant, *, announce: bool = True) -> None:
    """A participant dropped out: it stops counting towards the quorum (which may close the round now),
    and the task's group hears how many take part now (``announce=False``: the caller tells it)."""
    Participant.objects.filter(pk=participant.pk).update(connected=False)
    rnd = Round.objects.filter(task_id=participant.task_id, status=Round.Status.OPEN).first()
    if rnd is not None:
        fill_invitations(participant.task_id)  # an invited participant who left frees its place
        maybe_close(rnd.pk)
    if announce:
        _notify_on_commit(participant.task_id, _participants_event(status(participant.task)))


def status(task: Task) -> RoundStatus:
    rnd = active_round(task)
    connected = Participant.objects.filter(task=task, connected=True).count()
    return RoundStatus(
        round=rnd.number, base_version=rnd.base_version.number, participants=connected,
        contributed=rnd.contributions.count(), waiting_for=max(0, task.min_participants - connected),
        min_participants=task.min_participants, deadline=rnd.deadline.isoformat(),
        participants_per_round=task.participants_per_round or None,
        invited_ids=tuple(rnd.invited) if rnd.invited is not None else None,
    )


# Each encoding loses more precision than the one before (disco_client.codec).
_LOSSINESS = {"float32": 0, "float16": 1, "int8": 2}


def check_encoding(task: Task, encoding: Any) -> None:
    """Refuse an update encoded less exactly than the task's ``compression`` allows (a more exact one is fine:
    it only costs bytes)."""
    allowed = task.compression
    if _LOSSINESS.get(str(encoding), 99) > _LOSSINESS.get(allowed, 0):
        raise RoundError("compression", f"This task takes updates as {allowed} (its compression setting); this one "
                                        f"is {encoding}, which loses precision the task's owner did not accept. "
                                        f"Send it as {allowed}: the welcome message says which.")


def check_invited(participant: Participant, rnd: Round) -> None:
    """Refuse an update to a round that did not invite its sender (the task's ``participants_per_round``)."""
    if not is_invited(rnd.invited, participant.pk):
        per_round = participant.task.participants_per_round or len(rnd.invited)
        raise RoundError("not_invited", f"You are not invited to round {rnd.number}: this task takes updates from "
                                        f"{per_round} participants per round. Keep "
                                        "training locally and wait for the next round_closed (or round_failed): "
                                        "you will be invited in turn, those who waited longest first.")


def check_update_norm(task: Task, rnd: Round, message: WeightsMessage) -> None:
    """Refuse an update further than the task's ``max_update_norm`` (L2) from the round's base version."""
    limit = task.max_update_norm
    if limit is None:
        return
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
    check_invited(participant, rnd)
    check_encoding(task, header.get("encoding"))
    samples = header.get("samples")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise RoundError("bad_samples", "The update must say how many samples it was trained on (samples >= 1).")
    samples = counted_samples(samples, task.max_samples_per_update)
    check_update_norm(task, rnd, message)
    path = f"contributions/{task.pk}/{rnd.number}/{participant.pk}-{secrets.token_hex(4)}.frame"
    saved = default_storage.save(path, content)
    try:
        with transaction.atomic():
            # One transaction, one lock of the round's row, for storing and for the quorum: at hundreds of
            # participants each extra transaction per update is felt (every update of a daphne goes through its
            # one database thread, and every daphne waits for this lock).
            locked = Round.objects.select_for_update().select_related("task").filter(pk=rnd.pk).first()
            if locked is None:  # its task was deleted meanwhile
                raise RoundError("stale_round", f"Round {rnd.number} no longer exists.")
            if locked.status != Round.Status.OPEN:
                raise RoundError("stale_round", f"Round {locked.number} closed while the update arrived.")
            check_invited(participant, locked)
            contribution = Contribution.objects.create(round=locked, participant=participant, samples=samples,
                                                       blob=saved, nbytes=content.size)
            _close_if_ready(locked, timezone.now())
    except IntegrityError:
        default_storage.delete(saved)
        raise RoundError("duplicate", f"You already sent an update for round {rnd.number}; wait for it to close."
                         ) from None
    except BaseException:
        default_storage.delete(saved)
        raise
    return contribution


def maybe_close(round_id: int, *, now=None) -> bool:
    """Close the round (``open`` -> ``aggregating``) if its quorum is met, and queue ``aggregate_round``
    after commit. Returns whether it closed; a round no longer open is left alone (idempotent)."""
    with transaction.atomic():
        rnd = Round.objects.select_for_update().select_related("task").filter(pk=round_id).first()
        if rnd is None or rnd.status != Round.Status.OPEN:
            return False
        return _close_if_ready(rnd, now or timezone.now())


def _close_if_ready(rnd: Round, now) -> bool:
    """The quorum rule, on a round the caller holds locked and open: close it when ``min_participants`` sent an
    update and either every expected participant did (every connected one, or every invited one of a sampled
    round) or the deadline passed. Counted in the database, not by loading every contributor: this runs once
    per update."""
    contributions = rnd.contributions.all()
    count = contributions.count()
    if count == 0 or count < rnd.task.min_participants:
        return False
    if now < rnd.deadline:
        waiting = Participant.objects.filter(task=rnd.task, connected=True).exclude(
            pk__in=contributions.values("participant_id"))
        if rnd.invited is not None:  # a sampled round waits only for those it invited
            waiting = waiting.filter(pk__in=rnd.invited)
        if waiting.exists():
            return False
    # aggregating_since starts the clock of DISCO_AGGREGATION_STUCK_AFTER (aggregation.sweeper).
    rnd.status, rnd.aggregating_since = Round.Status.AGGREGATING, now
    rnd.contributors, rnd.bytes_received = _tally(rnd.pk)
    rnd.save(update_fields=["status", "aggregating_since", "contributors", "bytes_received"])
    enqueue_named_on_commit(AGGREGATE_ROUND, rnd.pk)
    return True


def _tally(round_id: int) -> tuple[int, int]:
    """The number and total size of the updates a round holds, kept on the round once it takes no more
    (the stored updates of old rounds are pruned, the round dashboard still shows them)."""
    tally = Contribution.objects.filter(round_id=round_id).aggregate(n=Count("pk"), nbytes=Sum("nbytes"))
    return tally["n"], tally["nbytes"] or 0


def close_if_due(round_id: int, *, now=None) -> bool:
    """For deadlines (``aggregation.sweeper``): close the round if it is open, past its
    deadline and has at least ``min_participants`` updates. Idempotent; returns whether it closed."""
    return maybe_close(round_id, now=now)


@dataclass(frozen=True)
class Outcome:
    """How a round ended: its status, its result version's pk (None when failed) and the reason in words.

    ``written`` says whether this call wrote it (False: another delivery had already finished the round).
    """

    status: str
    result_version_id: int | None
    message: str
    written: bool


def _outcome(rnd: Round | None, written: bool = False) -> Outcome:
    if rnd is None:
        return Outcome("", None, "The round no longer exists.", written)
    return Outcome(rnd.status, rnd.result_version_id, rnd.message, written)


def finish(round_id: int, artifacts: LayersModelArtifacts, server_step: ServerStep | None = None) -> Outcome:
    """Store an aggregating round's aggregate (``artifacts``, built on the round's base version) as a version.

    ``server_step``: the server optimizer's new state (already in storage), recorded only if the new
    version becomes current, in the same transaction; otherwise its file is deleted and the task's
    state stays as it was.

    One transaction, under the task's row lock:

    - if the task's current version is still the round's base, the new version becomes current and
      the round is ``closed`` (compare-and-swap);
    - otherwise (a curator rolled back, an owner uploaded a model, during the round) the version is
      stored but not made current, and the round is ``superseded`` with the reason in ``message``;
    - if the round is no longer aggregating (a duplicate or late delivery, or it failed meanwhile),
      nothing is written: exactly one version per round.

    Then the next round opens from the task's current version and ``round_closed`` goes to the
    task's group after commit; the stored updates of old rounds are pruned after commit.
    """
    peek = Round.objects.filter(pk=round_id).first()
    if peek is None or peek.status != Round.Status.AGGREGATING:
        if server_step is not None:
            optimizer_state.discard(server_step.blob)
        return _outcome(peek)
    version, recorded = None, False
    try:
        with transaction.atomic():
            task = _locked_task(peek.task_id)
            rnd = Round.objects.select_for_update(of=("self",)).select_related("base_version").get(pk=round_id)
            if rnd.status != Round.Status.AGGREGATING:
                return _outcome(rnd)
            base, current = rnd.base_version, task.current_version
            contributors = rnd.contributions.count()
            swap = base is not None and current is not None and current.pk == base.pk
            done = f"Aggregated {contributors} updates with {task.aggregator}"
            if server_step is not None:
                done = f"{done}, {server_step.note}"
            if swap:
                note = f"{done}."
            else:
                note = (f"{done}; not made current: version {current.number if current else '?'} became current "
                        f"while round {rnd.number} ran from version {base.number if base else '?'}.")
            version = create_version(task, artifacts, origin=Origin.ROUND, parent=base, round_number=rnd.number,
                                     note=note, make_current=swap)
            if swap:
                rnd.status, rnd.message = Round.Status.CLOSED, f"{done} into version {version.number}."
                if server_step is not None:
                    optimizer_state.record(task, server_step, version)
                    recorded = True
                    if server_step.reset:
                        rnd.message = f"{rnd.message} {server_step.reset}"
            else:
                rnd.status = Round.Status.SUPERSEDED
                rnd.message = (f"Superseded: version {current.number if current else '?'} was made current while "
                               f"round {rnd.number} ran from version {base.number if base else '?'} (a rollback "
                               f"or a new model). The round's result is stored as version {version.number} but "
                               "not made current; the next round starts from the current version.")
                if server_step is not None:
                    rnd.message += " The server optimizer's state did not advance."
            rnd.result_version, rnd.closed_at, rnd.aggregator = version, timezone.now(), task.aggregator
            rnd.save(update_fields=["status", "message", "result_version", "closed_at", "aggregator"])
            invited = None
            if task.current_version is not None:  # None only if the current version was deleted meanwhile
                invited = _open_round(task, rnd.number + 1).invited
            # "invited": the next round's invited ids (None: everyone); each consumer tells its connection only
            # whether it is one of them.
            event = {"type": "round.closed", "round": rnd.number, "result_version": version.number,
                     "version": task.current_version.number if task.current_version else version.number,
                     "next_round": rnd.number + 1, "contributors": contributors, "invited": invited}
            if not swap:
                event.update(superseded=True, reason=rnd.message)
            _notify_on_commit(task.pk, event)
            # Only once the version is committed: until then a re-run needs the round's frames.
            task_id = task.pk
            transaction.on_commit(lambda: _prune(task_id))
    except BaseException:
        # Rolled back (a soft time limit may land anywhere): the version's files would be left without a row.
        if version is not None:
            delete_files([version.storage_path(name) for name in version.file_names()])
        if server_step is not None:
            optimizer_state.discard(server_step.blob)
        raise
    finally:
        if server_step is not None and not recorded:
            optimizer_state.discard(server_step.blob)
    return _outcome(rnd, written=True)


def fail(round_id: int, reason: str, *, expected_status: str = Round.Status.AGGREGATING) -> bool:
    """Mark the round ``failed`` with ``reason`` (plain words saying what to change, if anything).

    Conditional on the status it leaves (``UPDATE ... WHERE status = expected_status``): a late or
    duplicate delivery, or a sweeper, cannot overwrite a round that another delivery already closed,
    superseded or failed; then nothing changes and it returns False. When it fails the round, in the
    same transaction the next round opens from the task's current (last good) version, read fresh,
    and ``round_failed`` goes to the task's group after commit. Returns whether it failed the round.
    """
    task_id = Round.objects.filter(pk=round_id).values_list("task_id", flat=True).first()
    if task_id is None:
        return False
    with transaction.atomic():
        task = _locked_task(task_id)  # the task's lock first, as in finish: the same order everywhere
        contributors, nbytes = _tally(round_id)  # an open round failed by the sweeper has no tally yet
        changed = Round.objects.filter(pk=round_id, status=expected_status).update(
            status=Round.Status.FAILED, message=reason, closed_at=timezone.now(),
            contributors=Coalesce("contributors", Value(contributors), output_field=PositiveIntegerField()),
            bytes_received=Coalesce("bytes_received", Value(nbytes), output_field=BigIntegerField()))
        if not changed:
            return False
        rnd = Round.objects.get(pk=round_id)
        event = {"type": "round.failed", "round": rnd.number, "reason": reason, "next_round": rnd.number + 1,
                 "version": task.current_version.number if task.current_version else None, "invited": None}
        if task.current_version is not None:
            following = _open_round(task, rnd.number + 1)
            event.update(next_round=following.number, invited=following.invited)
        _notify_on_commit(task.pk, event)
    log.warning("Round %s of task %s failed: %s", rnd.number, task_id, reason)
    return True


def _prune(task_id: str) -> None:
    try:
        contributions, participants = prune_finished_rounds(task_id)
    except Exception:  # the round is done; a failed clean-up is retried after the next round
        log.exception("Pruning the finished rounds of task %s failed", task_id)
        return
    if contributions or participants:
        log.info("Task %s: deleted %d stored updates of old rounds and %d departed participants", task_id,
                 contributions, participants)


FINISHED = [Round.Status.CLOSED, Round.Status.SUPERSEDED, Round.Status.FAILED]


def prune_finished_rounds(task_id: str) -> tuple[int, int]:
    """Delete the stored updates of the task's finished rounds but the ``DISCO_KEEP_CONTRIBUTION_ROUNDS``
    most recent, and the participants that left and have nothing left in any round.

    Called after a round's version is committed (never before: until then a re-run needs the
    frames). Idempotent: files go first, then their rows, so a run cut short is finished by
    the next one, and a file already gone is no error. Returns (contributions, participants) deleted.
    """
    keep = max(0, int(settings.DISCO_KEEP_CONTRIBUTION_ROUNDS))
    finished = Round.objects.filter(task_id=task_id, status__in=FINISHED)
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
