"""Federated evaluation: participants score each round's model on their own validation split.

After a round, every participant (browser or Python, either scheme) evaluates the model the round
produced on the validation samples it held out and sends ``{"type": "evaluation", "round", "version"
(federated only), "loss", "accuracy", "samples"}``: numbers only, never data. Both consumers call
``record`` with the message; it checks the numbers strictly, checks that the participant may report
on that round (federated: the round is closed or superseded and ``version`` is its result; decentralized:
the participant was one of the round's peers and reported done), stores one ``Evaluation`` per
participant and round, and keeps the round's ``val_loss`` / ``val_accuracy`` / ``val_samples`` the
sample-weighted mean of its reports, in the same transaction. The sample count is clamped to the
task's ``max_samples_per_update`` as an update's is, so one participant cannot outweigh the others
by claiming more. After commit the task's channel group hears ``round.evaluated``, so the round
dashboard redraws its validation curve; participants' connections ignore it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from tasks.models import Task

from . import peer_rounds, rounds
from .aggregators.bounds import counted_samples
from .broadcast import send_to_group_on_commit
from .models import Evaluation, Participant, PeerRound, PeerTurn, Round

# A federated round's model exists once the round is one of these (``failed`` wrote nothing).
EVALUABLE = (Round.Status.CLOSED, Round.Status.SUPERSEDED)


class EvaluationError(ValueError):
    """A report the server refuses; ``code`` is machine-readable, the message says what to do."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def refusal(exc: EvaluationError) -> dict[str, Any]:
    """The ``error`` frame for a refused report; ``about`` lets a client tell it from its round's errors."""
    return {"type": "error", "code": exc.code, "reason": str(exc), "about": "evaluation"}


@dataclass(frozen=True)
class Report:
    """A checked evaluation message (``samples`` as claimed; ``record`` clamps it)."""

    round: int
    version: int | None
    loss: float
    accuracy: float | None
    samples: int


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse(message: dict[str, Any], *, needs_version: bool) -> Report:
    """Check an ``evaluation`` message's fields; ``EvaluationError`` names the first one that is wrong."""
    number, version = message.get("round"), message.get("version")
    loss, accuracy, samples = message.get("loss"), message.get("accuracy"), message.get("samples")
    if not _is_int(number) or number < 1:
        raise EvaluationError("bad_round", f"'round' must be the number of the round you evaluated (an integer "
                                           f">= 1); got {number!r}.")
    if needs_version and (not _is_int(version) or version < 1):
        raise EvaluationError("bad_version", f"'version' must be the number of the version you evaluated (the "
                                             f"round_closed message's 'version'); got {version!r}.")
    if not _is_number(loss) or loss < 0:
        raise EvaluationError("bad_loss", f"'loss' must be a finite number >= 0 (the mean validation loss); got "
                                          f"{loss!r}. A model that diverged has nothing to report.")
    if accuracy is not None and (not _is_number(accuracy) or not 0 <= accuracy <= 1):
        raise EvaluationError("bad_accuracy", f"'accuracy' must be a fraction between 0 and 1, or null when the "
                                              f"model has no accuracy metric; got {accuracy!r}.")
    if not _is_int(samples) or samples < 1:
        raise EvaluationError("bad_samples", f"'samples' must be how many validation samples you scored (an "
                                             f"integer >= 1); got {samples!r}. With no validation split, send "
                                             "nothing.")
    return Report(number, version if needs_version else None, float(loss),
                  None if accuracy is None else float(accuracy), samples)


def _federated_round(task: Task, report: Report) -> Round:
    rnd = Round.objects.select_related("result_version").filter(task=task, number=report.round).first()
    if rnd is None:
        raise EvaluationError("unknown_round", f"Task '{task.pk}' has no round {report.round}.")
    if rnd.status not in EVALUABLE:
        what = "failed and produced no model" if rnd.status == Round.Status.FAILED else "has not finished"
        raise EvaluationError("round_not_finished", f"Round {report.round} {what}; evaluate the version a "
                                                    "round_closed message names, after it.")
    if rnd.result_version is None or rnd.result_version.number != report.version:
        result = rnd.result_version.number if rnd.result_version else None
        raise EvaluationError("wrong_version", f"Round {report.round} produced version {result}, not "
                                               f"{report.version}: report on the round's own result only.")
    return rnd


def _peer_round(participant: Participant, report: Report) -> PeerRound:
    rnd = PeerRound.objects.filter(task_id=participant.task_id, number=report.round).first()
    if rnd is None:
        raise EvaluationError("unknown_round", f"Task '{participant.task_id}' has no round {report.round}.")
    took_part = PeerTurn.objects.filter(round=rnd, participant=participant, selected=True,
                                        done_at__isnull=False).exists()
    if not took_part:
        raise EvaluationError("not_in_round", f"You did not finish round {report.round} as one of its peers; "
                                              "report only on rounds whose exchange you completed ('done').")
    return rnd


def weighted_metrics(rows: list[tuple[float, float | None, int]]) -> tuple[float | None, float | None, int | None]:
    """(loss, accuracy, samples) of reports as (loss, accuracy, samples): the sample-weighted means and the sum.

    Accuracy is averaged over the reports that have one (a model without the metric reports null).
    """
    total = sum(samples for _, _, samples in rows)
    if not total:
        return None, None, None
    loss = math.fsum(loss * samples for loss, _, samples in rows) / total
    scored = [(acc, samples) for _, acc, samples in rows if acc is not None]
    scored_total = sum(samples for _, samples in scored)
    accuracy = math.fsum(acc * samples for acc, samples in scored) / scored_total if scored_total else None
    return loss, accuracy, total


def _store(model: type[Round] | type[PeerRound], field: str, rnd: Round | PeerRound, participant: Participant,
           report: Report, samples: int, group: str) -> None:
    """Add the report and recompute the round's metrics, under the round's row lock (one transaction)."""
    with transaction.atomic():
        model.objects.select_for_update().filter(pk=rnd.pk).values_list("pk", flat=True).first()
        taken = Evaluation.objects.filter(**{field: rnd, "participant": participant})
        if taken.exists():
            raise EvaluationError("duplicate_evaluation", f"You already reported on round {report.round}; one "
                                                          "report per round counts. Evaluate the next round's model.")
        try:
            with transaction.atomic():
                Evaluation.objects.create(**{field: rnd}, participant=participant, loss=report.loss,
                                          accuracy=report.accuracy, samples=samples)
        except IntegrityError:  # the constraint's backstop: another connection of the same participant
            raise EvaluationError("duplicate_evaluation", f"You already reported on round {report.round}.") from None
        rows = list(Evaluation.objects.filter(**{field: rnd}).values_list("loss", "accuracy", "samples"))
        loss, accuracy, total = weighted_metrics(rows)
        model.objects.filter(pk=rnd.pk).update(val_loss=loss, val_accuracy=accuracy, val_samples=total)
        send_to_group_on_commit(group, {"type": "round.evaluated", "round": report.round, "reports": len(rows),
                                        "valLoss": loss, "valAccuracy": accuracy, "valSamples": total})


def record(participant: Participant, message: dict[str, Any]) -> dict[str, Any]:
    """Check and store ``participant``'s ``evaluation`` message; returns the ``evaluation_recorded`` reply.

    The reply says what counted (the round, and the samples after clamping) but not the round's
    aggregate: that would let a participant work out the others' reports by difference.
    """
    task = participant.task
    federated = task.scheme != "decentralized"
    report = parse(message, needs_version=federated)
    samples = counted_samples(report.samples, task.max_samples_per_update)
    if federated:
        rnd = _federated_round(task, report)
        _store(Round, "round", rnd, participant, report, samples, rounds.group_name(task.pk))
    else:
        rnd = _peer_round(participant, report)
        _store(PeerRound, "peer_round", rnd, participant, report, samples, peer_rounds.group_name(task.pk))
    reply: dict[str, Any] = {"type": "evaluation_recorded", "round": report.round, "samples": samples}
    if federated:
        reply["version"] = report.version
    if samples != report.samples:
        reply["note"] = (f"Counted as {samples} samples, this task's limit (maxSamplesPerUpdate); the report "
                         f"claimed {report.samples}.")
    return reply
