"""What a task's rounds were: one row per round, for the rounds API, its CSV and the round dashboard.

Read only: nothing here changes a round (``rounds`` and ``peer_rounds`` do). A row describes a
federated ``Round`` or a decentralized ``PeerRound`` in the same shape (camelCase, as the rest of
the API): its number, scheme, status and the reason it ended so, when it opened and closed, who
took part, the bytes the server received, the base and result versions (with the URL of their
``model.json``) and the validation metrics participants reported, when there are any.

What is known differs by scheme: the server receives federated updates (so it counts their bytes)
but not who was connected when a round opened (so federated dropouts are unknown, ``None``, except in
rounds that invite ``participantsPerRound`` participants: there the invited count is in ``selectedPeers`` and
those invited who sent nothing by the round's end are its dropouts); it
never sees decentralized updates (bytes ``None``) but records which peers were selected and which
left during the exchange (dropouts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q, Sum

from tasks.models import ModelVersion, Task

from .models import PeerRound, Round

# The CSV's columns, in order: the row keys, flattened (versions as numbers and one model URL).
CSV_COLUMNS = ["round", "scheme", "status", "opened_at", "closed_at", "duration_seconds", "contributors",
               "selected_peers", "dropouts", "bytes_received", "aggregator", "base_version", "result_version",
               "result_model_url", "val_loss", "val_accuracy", "val_samples", "message"]

FINISHED_ROUND = [Round.Status.CLOSED, Round.Status.SUPERSEDED, Round.Status.FAILED]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start is not None and end is not None else None


def _version(version: ModelVersion | None, absolute: Any) -> dict[str, Any] | None:
    if version is None:
        return None
    return {"number": version.number, "modelUrl": absolute(version.url())}


def _metrics(rnd: Round | PeerRound) -> dict[str, Any]:
    return {"valLoss": rnd.val_loss, "valAccuracy": rnd.val_accuracy, "valSamples": rnd.val_samples}


def _federated_row(rnd: Round, absolute: Any) -> dict[str, Any]:
    # The tally is kept on the round once it takes no more updates; an open round's is counted live.
    contributors = rnd.contributors if rnd.contributors is not None else rnd.live_contributors
    nbytes = rnd.bytes_received if rnd.bytes_received is not None else (rnd.live_bytes or 0)
    # A sampled round (participantsPerRound) knows whom it invited: those who sent nothing by its end dropped out.
    invited = len(rnd.invited) if rnd.invited is not None else None
    taking_no_more = rnd.contributors is not None  # the tally is kept once the round stops taking updates
    dropouts = max(0, invited - contributors) if invited is not None and taking_no_more else None
    return {
        "number": rnd.number, "scheme": "federated", "status": rnd.status, "message": rnd.message,
        "openedAt": _iso(rnd.opened_at), "closedAt": _iso(rnd.closed_at), "deadline": _iso(rnd.deadline),
        "durationSeconds": _duration(rnd.opened_at, rnd.closed_at),
        "contributors": contributors, "selectedPeers": invited, "dropouts": dropouts, "bytesReceived": nbytes,
        "aggregator": rnd.aggregator or None,
        "baseVersion": _version(rnd.base_version, absolute), "resultVersion": _version(rnd.result_version, absolute),
        **_metrics(rnd),
    }


def _peer_row(rnd: PeerRound, absolute: Any) -> dict[str, Any]:
    return {
        "number": rnd.number, "scheme": "decentralized", "status": rnd.status, "message": rnd.message,
        "openedAt": _iso(rnd.opened_at), "closedAt": _iso(rnd.closed_at),
        "deadline": _iso(rnd.exchange_deadline or rnd.ready_deadline),
        "durationSeconds": _duration(rnd.opened_at, rnd.closed_at),
        # Peers that finished the exchange (reported done); the selected ones started it.
        "contributors": rnd.finished_peers if rnd.status == PeerRound.Status.CLOSED else None,
        "selectedPeers": rnd.selected_peers if rnd.started_at is not None else None,
        "dropouts": rnd.dropped_peers if rnd.started_at is not None else None,
        "bytesReceived": None,  # peers exchange updates among themselves; the server sees none
        "aggregator": None, "baseVersion": None, "resultVersion": None,
        **_metrics(rnd),
    }


def federated_rounds(task: Task):
    return (Round.objects.filter(task=task).select_related("base_version", "result_version")
            .annotate(live_contributors=Count("contributions"), live_bytes=Sum("contributions__nbytes"))
            .order_by("-number"))


def peer_rounds(task: Task):
    selected = Q(turns__selected=True)
    return (PeerRound.objects.filter(task=task)
            .annotate(selected_peers=Count("turns", filter=selected),
                      dropped_peers=Count("turns", filter=selected & Q(turns__left_at__isnull=False)),
                      finished_peers=Count("turns", filter=selected & Q(turns__done_at__isnull=False)))
            .order_by("-number"))


def round_rows(task: Task, absolute: Any = str) -> list[dict[str, Any]]:
    """Every round of ``task``, newest first (by opening time; the scheme decides, both kinds if it changed).

    ``absolute`` turns a path into a URL (``request.build_absolute_uri``); by default paths stay paths.
    """
    rows = [_federated_row(r, absolute) for r in federated_rounds(task)]
    rows += [_peer_row(r, absolute) for r in peer_rounds(task)]
    rows.sort(key=lambda row: (row["openedAt"] or "", row["number"]), reverse=True)
    return rows


def csv_record(row: dict[str, Any]) -> list[Any]:
    """One row in the order of ``CSV_COLUMNS`` (empty cells for what is unknown)."""
    base, result = row["baseVersion"], row["resultVersion"]
    values = {
        "round": row["number"], "scheme": row["scheme"], "status": row["status"], "opened_at": row["openedAt"],
        "closed_at": row["closedAt"], "duration_seconds": row["durationSeconds"], "contributors": row["contributors"],
        "selected_peers": row["selectedPeers"], "dropouts": row["dropouts"], "bytes_received": row["bytesReceived"],
        "aggregator": row["aggregator"], "base_version": base["number"] if base else None,
        "result_version": result["number"] if result else None,
        "result_model_url": result["modelUrl"] if result else None, "val_loss": row["valLoss"],
        "val_accuracy": row["valAccuracy"], "val_samples": row["valSamples"], "message": row["message"],
    }
    return ["" if values[c] is None else values[c] for c in CSV_COLUMNS]


def summary(task: Task) -> dict[str, Any]:
    """The public summary on the task page: how many rounds finished, how the last one ended, and when,
    and the last validation accuracy reported (``None`` when none was)."""
    if task.scheme == "decentralized":
        finished = PeerRound.objects.filter(task=task, status=PeerRound.Status.CLOSED)
    else:
        finished = Round.objects.filter(task=task, status__in=FINISHED_ROUND)
    last = finished.order_by("-number").first()
    measured = finished.filter(val_accuracy__isnull=False).order_by("-number").first()
    return {
        "count": finished.count(),
        "last": None if last is None else {"number": last.number, "status": last.status,
                                           "label": last.get_status_display(), "closed_at": last.closed_at,
                                           "message": last.message},
        "val_accuracy": None if measured is None else {"number": measured.number, "value": measured.val_accuracy},
    }
