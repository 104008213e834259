"""The decentralized round service: readiness, quorum, peer lists, done reports and deadlines.

The server never sees a model or an update here: it records which peers took part in
which round and when (``PeerRound``, ``PeerTurn``), tells each round's peers who the
others are, and checks that relayed frames go between peers of the same round.

A round is ``open`` while peers announce they are ready. Its quorum is met when every
connected peer is ready and there are at least ``min_participants``, or when the task's
round deadline has passed since the first peer was ready and at least the minimum are.
The round then moves to ``exchanging`` with the ready peers, and the next round opens at
once for those who finish or join meanwhile. With the mean, each peer reports which
peers' updates it holds (``received``); once every remaining peer has (or at the exchange
deadline) the server announces the intersection (``agreed``), and every peer averages
exactly those updates. So a peer that leaves mid-exchange, its update reaching some peers
and not others, cannot make the peers' models differ. The round closes when every peer
of the round reported done (peers that left stop counting) or at its exchange deadline.

Consumers call one of these functions per message; only this module changes peer rounds
(``PeerRound`` and ``PeerTurn`` rows), and it broadcasts to the task's channel group after
commit. The deadlines are columns (``ready_deadline``, ``exchange_deadline``):
``aggregation.sweeper`` calls ``maybe_start``, ``maybe_agree`` and ``maybe_close`` once they pass
(idempotent), so a restart loses none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from disco_client.peer_crypto import PeerCryptoError, decode_public_key
from tasks.models import Task

from . import rounds
from .broadcast import send_to_group_on_commit
from .models import Participant, PeerRound, PeerTurn


class PeerRoundError(ValueError):
    """A request the round cannot take; ``code`` is machine-readable, the message says why and what to do."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class PeerState:
    round: int
    participants: int
    ready: int
    waiting_for: int
    min_participants: int

    def fields(self) -> dict[str, Any]:
        return {"round": self.round, "participants": self.participants, "ready": self.ready,
                "waitingFor": self.waiting_for, "minParticipants": self.min_participants}


def group_name(task_id: str) -> str:
    return f"decentralized.{task_id}"


def peer_group(participant_id: Any) -> str:
    """The group of one participant's connection, for signals and relayed frames addressed to it.

    Participant ids are UUIDs, unique across tasks; the name stays under Channels' 100 characters.
    """
    return f"peer.{participant_id}"


def deadline_seconds(task: Task) -> float:
    return float(task.round_deadline_seconds)


def _notify_on_commit(task_id: str, event: dict[str, Any]) -> None:
    send_to_group_on_commit(group_name(task_id), event)


def open_round(task: Task) -> PeerRound:
    """The task's open round, opening round 1 (or the next) when there is none."""
    with transaction.atomic():
        Task.objects.select_for_update().get(pk=task.pk)
        rnd = PeerRound.objects.filter(task=task, status=PeerRound.Status.OPEN).first()
        if rnd is None:
            last = PeerRound.objects.filter(task=task).aggregate(n=Max("number"))["n"] or 0
            rnd = PeerRound.objects.create(task=task, number=last + 1)
        return rnd


def join(task: Task, *, resume_token: str = "", kind: str = Participant.Kind.BROWSER,
         address: str | None = None) -> tuple[Participant, bool]:
    """Register a peer (or reconnect the one ``resume_token`` names); the same membership as federated tasks.

    Opens round 1 if there is none, and tells the task's group how many take part now.
    """
    participant, resumed = rounds.join(task, resume_token=resume_token, kind=kind, address=address)
    open_round(task)
    broadcast_participants(task)
    return participant, resumed


def state(task: Task) -> PeerState:
    rnd = open_round(task)
    connected = Participant.objects.filter(task=task, connected=True).count()
    ready = rnd.turns.filter(participant__connected=True).count()
    return PeerState(round=rnd.number, participants=connected, ready=ready,
                     waiting_for=max(0, task.min_participants - ready), min_participants=task.min_participants)


def _participants_event(task: Task) -> dict[str, Any]:
    return {"type": "participants.changed", **state(task).fields()}


def broadcast_participants(task: Task) -> None:
    _notify_on_commit(task.pk, _participants_event(task))


def ready(participant: Participant, number: Any, public_key: Any = None) -> PeerRound:
    """``participant`` is ready for round ``number``; starts the round if that meets its quorum.

    ``public_key`` is the peer's ephemeral ECDH key for the round (``peer_crypto``), handed to the
    round's peers with their list; it is public, so keeping it reveals nothing.
    """
    task = participant.task
    if public_key is not None:
        try:
            decode_public_key(public_key)
        except PeerCryptoError as exc:
            raise PeerRoundError("bad_public_key", f"{exc} Send the round's key as \"publicKey\" in 'ready'.") \
                from None
    rnd = open_round(task)
    if not isinstance(number, int) or isinstance(number, bool) or number != rnd.number:
        raise PeerRoundError("wrong_round", f"Round {number!r} is not open for peers to join; the open round is "
                                            f"{rnd.number}: send {{\"type\": \"ready\", \"round\": {rnd.number}}}.")
    with transaction.atomic():
        locked = PeerRound.objects.select_for_update().get(pk=rnd.pk)
        if locked.status != PeerRound.Status.OPEN:
            raise PeerRoundError("wrong_round", f"Round {locked.number} started while you announced yourself; "
                                                f"send ready for round {locked.number + 1}.")
        turn, created = PeerTurn.objects.get_or_create(round=locked, participant=participant,
                                                       defaults={"public_key": public_key or ""})
        if not created and public_key is not None and turn.public_key != public_key:
            turn.public_key = public_key
            turn.save(update_fields=["public_key"])
        if created and locked.ready_deadline is None:
            locked.ready_deadline = timezone.now() + timedelta(seconds=deadline_seconds(task))
            locked.save(update_fields=["ready_deadline"])
        broadcast_participants(task)
    maybe_start(rnd.pk)
    rnd.refresh_from_db()
    return rnd


def maybe_start(round_id: int, *, now: datetime | None = None) -> bool:
    """Start the open round if its quorum is met: send its peers the list, open the next round."""
    now = now or timezone.now()
    with transaction.atomic():
        rnd = PeerRound.objects.select_for_update().select_related("task").filter(pk=round_id).first()
        if rnd is None or rnd.status != PeerRound.Status.OPEN:
            return False
        task = rnd.task
        ready_turns = list(rnd.turns.filter(participant__connected=True).order_by("participant_id"))
        ready_ids = {t.participant_id for t in ready_turns}
        connected = set(Participant.objects.filter(task=task, connected=True).values_list("pk", flat=True))
        enough = len(ready_ids) >= task.min_participants
        everyone = bool(ready_ids) and connected <= ready_ids
        due = rnd.ready_deadline is not None and now >= rnd.ready_deadline
        if not enough or not (everyone or due):
            return False
        rnd.status, rnd.started_at = PeerRound.Status.EXCHANGING, now
        rnd.exchange_deadline = now + timedelta(seconds=deadline_seconds(task))
        rnd.save(update_fields=["status", "started_at", "exchange_deadline"])
        PeerTurn.objects.filter(pk__in=[t.pk for t in ready_turns]).update(selected=True)
        PeerRound.objects.create(task=task, number=rnd.number + 1)
        peers = sorted(str(pk) for pk in ready_ids)
        keys = {str(t.participant_id): t.public_key for t in ready_turns if t.public_key}
        _notify_on_commit(task.pk, {"type": "peers.started", "round": rnd.number, "peers": peers,
                                    "deadline": rnd.exchange_deadline.isoformat(), "public_keys": keys})
        broadcast_participants(task)
    return True


def _exchanging(task: Task, number: Any) -> PeerRound:
    rnd = PeerRound.objects.filter(task=task, number=number, status=PeerRound.Status.EXCHANGING).first() \
        if isinstance(number, int) and not isinstance(number, bool) else None
    if rnd is None:
        current = PeerRound.objects.filter(task=task, status=PeerRound.Status.EXCHANGING).order_by("-number").first()
        where = f"round {current.number} is" if current else "no round is"
        raise PeerRoundError("wrong_round", f"Round {number!r} is not exchanging updates ({where}).")
    return rnd


def report_received(participant: Participant, number: Any, held: Any) -> bool:
    """``participant`` holds the updates of the peers ``held`` (itself included) for round ``number``.

    Returns whether that completed the round's agreement.
    """
    rnd = _exchanging(participant.task, number)
    members = {str(pk) for pk in rnd.turns.filter(selected=True).values_list("participant_id", flat=True)}
    me = str(participant.pk)
    if me not in members:
        raise PeerRoundError("not_in_round", f"You are not one of round {rnd.number}'s peers.")
    if not (isinstance(held, list) and all(isinstance(p, str) for p in held) and me in held
            and set(held) <= members):
        raise PeerRoundError("bad_report", f"'received' lists, as 'peers', the ids of round {rnd.number}'s peers "
                                           "whose updates you hold, yours included.")
    PeerTurn.objects.filter(round=rnd, participant=participant).update(received=sorted(set(held)))
    return maybe_agree(rnd.pk)


def maybe_agree(round_id: int, *, now: datetime | None = None) -> bool:
    """Announce the updates every remaining peer holds, once all have reported (or at the exchange deadline)."""
    now = now or timezone.now()
    with transaction.atomic():
        rnd = PeerRound.objects.select_for_update().filter(pk=round_id).first()
        if rnd is None or rnd.status != PeerRound.Status.EXCHANGING or rnd.agreed is not None:
            return False
        turns = list(rnd.turns.filter(selected=True))
        present = [t for t in turns if t.left_at is None]
        reports = [set(t.received) for t in present if t.received is not None]
        if not reports or (len(reports) < len(present) and now < rnd.exchange_deadline):
            return False
        rnd.agreed = sorted(set.intersection(*reports))
        rnd.save(update_fields=["agreed"])
        members = sorted(str(t.participant_id) for t in turns)
        _notify_on_commit(rnd.task_id, {"type": "peers.agreed", "round": rnd.number, "peers": rnd.agreed,
                                        "members": members})
    return True


def done(participant: Participant, number: Any) -> bool:
    """``participant`` finished round ``number``'s exchange; returns whether that closed the round."""
    rnd = _exchanging(participant.task, number)
    updated = PeerTurn.objects.filter(round=rnd, participant=participant, selected=True).update(done_at=timezone.now())
    if not updated:
        raise PeerRoundError("not_in_round", f"You are not one of round {rnd.number}'s peers.")
    return maybe_close(rnd.pk)


def maybe_close(round_id: int, *, now: datetime | None = None) -> bool:
    """Close an exchanging round when all its remaining peers are done, or at its exchange deadline."""
    now = now or timezone.now()
    with transaction.atomic():
        rnd = PeerRound.objects.select_for_update().select_related("task").filter(pk=round_id).first()
        if rnd is None or rnd.status != PeerRound.Status.EXCHANGING:
            return False
        turns = list(rnd.turns.filter(selected=True))
        waiting = [t for t in turns if t.done_at is None and t.left_at is None]
        if waiting and now < rnd.exchange_deadline:
            return False
        finished = sorted(str(t.participant_id) for t in turns if t.done_at is not None)
        rnd.status, rnd.closed_at = PeerRound.Status.CLOSED, now
        if waiting:
            rnd.message = f"Closed at the exchange deadline; {len(waiting)} peer(s) had not reported done."
        rnd.save(update_fields=["status", "closed_at", "message"])
        nxt = PeerRound.objects.filter(task=rnd.task, number__gt=rnd.number).order_by("number").first()
        _notify_on_commit(rnd.task_id, {"type": "round.closed", "round": rnd.number,
                                        "next_round": nxt.number if nxt else rnd.number + 1, "peers": finished})
    return True


def leave(participant: Participant) -> None:
    """A peer disconnected: it leaves its exchanging rounds (the others stop waiting) and the quorum."""
    Participant.objects.filter(pk=participant.pk).update(connected=False)
    now = timezone.now()
    for turn in PeerTurn.objects.filter(participant=participant, selected=True, done_at=None, left_at=None,
                                        round__status=PeerRound.Status.EXCHANGING).select_related("round"):
        PeerTurn.objects.filter(pk=turn.pk).update(left_at=now)
        _notify_on_commit(participant.task_id, {"type": "peer.left", "round": turn.round.number,
                                                "peer": str(participant.pk)})
        maybe_agree(turn.round_id)  # its report, if any, no longer counts: the others may be complete now
        maybe_close(turn.round_id)
    broadcast_participants(participant.task)
    rnd = PeerRound.objects.filter(task_id=participant.task_id, status=PeerRound.Status.OPEN).first()
    if rnd is not None:
        maybe_start(rnd.pk)


def check_signal_target(sender: Participant, target: Any) -> None:
    """A WebRTC signal may go to any other connected peer of the same task."""
    known = isinstance(target, str) and target != str(sender.pk) and _is_uuid(target) and \
        Participant.objects.filter(pk=target, task_id=sender.task_id, connected=True).exists()
    if not known:
        raise PeerRoundError("unknown_peer", f"No connected peer {target!r} in this task: signals go to the ids of "
                                             "the 'peers' message.")


def check_relay(sender: Participant, target: Any, number: Any) -> None:
    """A relayed frame goes from one peer of an exchanging round to another peer of the same round."""
    task = sender.task
    if not task.allow_relay:
        raise PeerRoundError("relay_forbidden", "This task does not allow relaying through the server; peers must "
                                                "connect directly (WebRTC).")
    check_signal_target(sender, target)
    rnd = _exchanging(task, number)
    members = set(PeerTurn.objects.filter(round=rnd, selected=True, left_at=None).values_list("participant_id",
                                                                                               flat=True))
    if sender.pk not in members or not any(str(m) == target for m in members):
        raise PeerRoundError("not_in_round", f"Relayed frames go between peers of round {rnd.number}; "
                                             f"{'you are' if sender.pk not in members else repr(target) + ' is'} "
                                             "not one of them.")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
