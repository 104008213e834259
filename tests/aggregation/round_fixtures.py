"""Tasks with rounds in every status, made with the model layer, for the round dashboard's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregation.models import Contribution, Participant, PeerRound, PeerTurn, Round
from tasks.versions import create_version

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FAILED_REASON = "Aggregation failed (ValueError: shapes differ); nothing was written. The next round starts again."
SUPERSEDED_REASON = ("Superseded: version 4 was made current while round 3 ran from version 2 (a rollback or a new "
                     "model). The round's result is stored as version 3 but not made current.")


def _round(task, number, status, *, base, result=None, seconds=None, message="", **fields) -> Round:
    rnd = Round.objects.create(task=task, number=number, base_version=base, status=status, message=message,
                               result_version=result, deadline=T0 + timedelta(minutes=number + 5), **fields)
    opened = T0 + timedelta(minutes=number)
    closed = opened + timedelta(seconds=seconds) if seconds is not None else None
    Round.objects.filter(pk=rnd.pk).update(opened_at=opened, closed_at=closed)  # opened_at is auto_now_add
    return rnd


def federated_history(task, artifacts, other_artifacts) -> dict[str, Round]:
    """Round 1 closed (its updates pruned, its tally kept; metrics), 2 failed (one update of 700 bytes
    still stored), 3 superseded (two updates stored), 4 open (nothing yet). Versions 1..4, 4 current."""
    v1 = create_version(task, artifacts, origin="initial")
    v2 = create_version(task, other_artifacts, origin="round", round_number=1, parent=v1)
    v3 = create_version(task, artifacts, origin="round", round_number=3, parent=v2, make_current=False)
    v4 = create_version(task, other_artifacts, origin="upload", parent=v2)
    a = Participant.objects.create(task=task, resume_token=f"{task.pk}-a", kind="python")
    b = Participant.objects.create(task=task, resume_token=f"{task.pk}-b", connected=False)
    rounds = {
        "closed": _round(task, 1, "closed", base=v1, result=v2, seconds=12.5, contributors=2, bytes_received=3500,
                         aggregator="median", message="Aggregated 2 updates with median into version 2.",
                         val_loss=0.41, val_accuracy=0.85, val_samples=40),
        "failed": _round(task, 2, "failed", base=v2, seconds=30, message=FAILED_REASON),
        "superseded": _round(task, 3, "superseded", base=v2, result=v3, seconds=8, aggregator="mean",
                             message=SUPERSEDED_REASON),
        "open": _round(task, 4, "open", base=v4),
    }
    Contribution.objects.create(round=rounds["failed"], participant=a, samples=10, blob="x/2a", nbytes=700)
    Contribution.objects.create(round=rounds["superseded"], participant=a, samples=10, blob="x/3a", nbytes=1200)
    Contribution.objects.create(round=rounds["superseded"], participant=b, samples=12, blob="x/3b", nbytes=1300)
    return rounds


def peer_history(task) -> PeerRound:
    """Decentralized round 1 closed: 4 peers ready, 3 selected, 1 of them left, 2 done; round 2 open."""
    rnd = PeerRound.objects.create(task=task, number=1, status="closed", started_at=T0 + timedelta(seconds=5),
                                   message="Closed at the exchange deadline; 1 peer(s) had not reported done.",
                                   val_loss=0.7, val_accuracy=0.6, val_samples=90)
    PeerRound.objects.filter(pk=rnd.pk).update(opened_at=T0, closed_at=T0 + timedelta(seconds=65))
    peers = [Participant.objects.create(task=task, resume_token=f"{task.pk}-p{i}") for i in range(4)]
    done = T0 + timedelta(seconds=60)
    PeerTurn.objects.create(round=rnd, participant=peers[0], selected=True, done_at=done)
    PeerTurn.objects.create(round=rnd, participant=peers[1], selected=True, done_at=done)
    PeerTurn.objects.create(round=rnd, participant=peers[2], selected=True, left_at=done)
    PeerTurn.objects.create(round=rnd, participant=peers[3], selected=False)
    nxt = PeerRound.objects.create(task=task, number=2)
    PeerRound.objects.filter(pk=nxt.pk).update(opened_at=T0 + timedelta(seconds=5))
    return rnd
