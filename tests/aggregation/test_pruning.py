"""Stored updates of finished rounds are deleted once the next version is committed; departed participants too."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from aggregation import rounds
from aggregation.models import Contribution, Participant, Round
from disco_client.codec import decode_weights
from tasks.versions import create_version
from tests.aggregation.test_consumer import update_frame

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fed_task(make_task, tiny_artifacts):
    task = make_task("fed", min_participants=2)
    create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    return task


def play_round(task, participants, number: int) -> None:
    """Every participant sends an update to round ``number``; the last one closes it (aggregated inline)."""
    task.refresh_from_db()
    for p in participants:
        frame = update_frame(task, fill=0.1 * number, round_number=number, base=task.current_version.number)
        rounds.submit(p, decode_weights(frame, expected=rounds.expected_specs(rounds.active_round(task))),
                      ContentFile(frame))
    assert Round.objects.get(task=task, number=number).status == Round.Status.CLOSED


def frames(media_root, number: int) -> list[str]:
    folder = media_root / "contributions" / "fed" / str(number)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_frames_of_rounds_before_the_kept_ones_are_deleted_after_the_version(fed_task, media_root, settings):
    settings.DISCO_KEEP_CONTRIBUTION_ROUNDS = 1
    a, _ = rounds.join(fed_task)
    b, _ = rounds.join(fed_task)
    play_round(fed_task, [a, b], 1)
    assert len(frames(media_root, 1)) == 2  # the newest finished round is kept for audit
    play_round(fed_task, [a, b], 2)
    assert frames(media_root, 1) == [] and not (media_root / "contributions" / "fed" / "1").exists()
    assert len(frames(media_root, 2)) == 2
    assert set(Contribution.objects.values_list("round__number", flat=True)) == {2}
    # The versions and rounds themselves stay.
    assert fed_task.versions.count() == 3 and Round.objects.filter(task=fed_task).count() == 3
    # Running it again changes nothing (idempotent), and a file already gone is no error.
    (media_root / Contribution.objects.first().blob).unlink()
    settings.DISCO_KEEP_CONTRIBUTION_ROUNDS = 0
    assert rounds.prune_finished_rounds("fed") == (2, 0)
    assert rounds.prune_finished_rounds("fed") == (0, 0)
    assert not Contribution.objects.exists() and frames(media_root, 2) == []


def test_departed_participants_with_nothing_kept_are_deleted(fed_task, media_root, settings):
    settings.DISCO_KEEP_CONTRIBUTION_ROUNDS = 1
    a, _ = rounds.join(fed_task)
    b, _ = rounds.join(fed_task)
    idle, _ = rounds.join(fed_task)
    rounds.leave(idle)  # joined and left without contributing
    play_round(fed_task, [a, b], 1)
    assert not Participant.objects.filter(pk=idle.pk).exists()
    rounds.leave(b)  # b's update of round 1 is still kept: b stays
    c, _ = rounds.join(fed_task)
    play_round(fed_task, [a, c], 2)
    assert set(Participant.objects.values_list("pk", flat=True)) == {a.pk, c.pk}  # b's round 1 is gone, so is b
    # b's resume token now joins as a new participant.
    again, resumed = rounds.join(fed_task, resume_token=b.resume_token)
    assert not resumed and again.pk != b.pk
