"""Participant sampling (a task's ``participants_per_round``, K): each round invites K of the connected
participants, seeded and favouring those who waited longest; only they may send an update, and the
round's quorum counts only them."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.core.files.base import ContentFile

from aggregation import rounds
from aggregation import tasks as agg_tasks
from aggregation.models import Participant, Round
from disco_client.codec import decode_weights
from tasks.versions import create_version
from tests.aggregation.test_consumer import connect, update_frame
from tests.aggregation.websockets import receive

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sampled(make_task, tiny_artifacts):
    """A federated task inviting 2 participants per round (minimum 2)."""
    task = make_task("sampled", min_participants=2, max_contribution_share=1.0, participants_per_round=2)
    create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    return task


def send(task, participant: Participant, fill: float = 0.5):
    """``participant``'s update to the task's open round, trained from its base version."""
    rnd = rounds.active_round(task)
    frame = update_frame(task, fill=fill, round_number=rnd.number, base=rnd.base_version.number)
    return rounds.submit(participant, decode_weights(frame, expected=rounds.expected_specs(rnd)), ContentFile(frame))


def enter_all(task, n: int) -> list[Participant]:
    return [rounds.enter(task)[0] for _ in range(n)]


def open_round(task) -> Round:
    return Round.objects.get(task=task, status=Round.Status.OPEN)


def test_choose_invited_is_seeded_and_favours_those_who_waited_longest():
    ids = [f"p{i}" for i in range(8)]
    never = [(pk, None) for pk in ids]
    first = rounds.choose_invited("t", 3, never, 3)
    assert first == rounds.choose_invited("t", 3, list(reversed(never)), 3)  # same seed, same choice
    assert len(first) == 3 and set(first) <= set(ids)
    # Another round (or task) shuffles the ties differently: over a few rounds the choice changes.
    assert len({tuple(rounds.choose_invited("t", n, never, 3)) for n in range(1, 6)}) > 1
    # Those invited least recently go first, whatever the shuffle says.
    waited = [("p0", 7), ("p1", 2), ("p2", None), ("p3", 5), ("p4", 2)]
    assert set(rounds.choose_invited("t", 8, waited, 3)) == {"p2", "p1", "p4"}
    assert rounds.choose_invited("t", 8, waited, 3)[0] == "p2"


def test_each_round_invites_exactly_k_rotates_and_closes_once_the_invited_contributed(sampled, held):
    people = enter_all(sampled, 5)
    seen: list[set[str]] = []
    for number in (1, 2, 3):
        rnd = open_round(sampled)
        assert rnd.number == number and len(rnd.invited) == 2
        seen.append(set(rnd.invited))
        invited = [p for p in people if str(p.pk) in rnd.invited]
        for i, participant in enumerate(invited):
            send(sampled, participant, fill=0.5 + i)
        rnd.refresh_from_db()
        # Three connected participants sent nothing, yet the round closed: they were not invited.
        assert rnd.status == Round.Status.AGGREGATING and rnd.contributors == 2
        agg_tasks.aggregate_round(rnd.pk)
        assert Round.objects.get(pk=rnd.pk).status == Round.Status.CLOSED
    # Those who waited go first: round 2 invites none of round 1's, and after 3 rounds everyone had a turn.
    assert not seen[0] & seen[1]
    assert set().union(*seen) == {str(p.pk) for p in people}
    assert Participant.objects.filter(task=sampled, last_invited_round__isnull=True).count() == 0


def test_an_update_from_a_participant_not_invited_is_refused(sampled, held):
    people = enter_all(sampled, 3)
    rnd = open_round(sampled)
    outsider = next(p for p in people if str(p.pk) not in rnd.invited)
    with pytest.raises(rounds.RoundError) as refused:
        send(sampled, outsider)
    assert refused.value.code == "not_invited"
    assert "not invited to round 1" in str(refused.value) and "wait for the next round_closed" in str(refused.value)
    assert rnd.contributions.count() == 0


def test_a_joiner_is_invited_while_the_round_has_room_and_a_leaver_frees_its_place(sampled, held):
    a, b, c = enter_all(sampled, 3)
    rnd = open_round(sampled)
    assert rnd.invited == [str(a.pk), str(b.pk)]  # each joined while there was room
    state = rounds.status(sampled)
    assert state.invited_for(a.pk) and not state.invited_for(c.pk)
    assert state.fields()["participantsPerRound"] == 2
    rounds.leave(b)  # b leaves before sending: c, connected and waiting, takes its place
    rnd.refresh_from_db()
    assert set(rnd.invited) == {str(a.pk), str(b.pk), str(c.pk)}
    send(sampled, a)
    send(sampled, c, fill=1.5)
    rnd.refresh_from_db()
    assert rnd.status == Round.Status.AGGREGATING and rnd.contributors == 2


def test_a_contributor_who_leaves_keeps_its_place(sampled, held):
    a, b, c = enter_all(sampled, 3)
    send(sampled, a)
    rounds.leave(a)  # its update counts: nobody else is invited in its place
    rnd = open_round(sampled)
    assert rnd.invited == [str(a.pk), str(b.pk)]
    with pytest.raises(rounds.RoundError):
        send(sampled, c)
    send(sampled, b, fill=1.5)
    assert Round.objects.get(pk=rnd.pk).status == Round.Status.AGGREGATING


def test_without_the_setting_everyone_is_invited(make_task, tiny_artifacts, held):
    task = make_task("everyone", min_participants=2, max_contribution_share=1.0)
    create_version(task, tiny_artifacts, origin="initial")
    task.refresh_from_db()
    a, b, c = enter_all(task, 3)
    rnd = open_round(task)
    assert rnd.invited is None
    state = rounds.status(task)
    assert all(state.invited_for(p.pk) for p in (a, b, c)) and state.fields()["participantsPerRound"] is None
    send(task, a)
    send(task, b, fill=1.5)
    assert Round.objects.get(pk=rnd.pk).status == Round.Status.OPEN  # c is connected and has not sent yet
    send(task, c, fill=2.5)
    assert Round.objects.get(pk=rnd.pk).status == Round.Status.AGGREGATING


@pytest.mark.both_modes
async def test_each_connection_hears_whether_it_is_invited(make_task, tiny_artifacts):
    """K = 1: the first to join is invited to round 1, the second waits and is invited to round 2."""
    def make():
        task = make_task("fed", min_participants=1, max_contribution_share=1.0, participants_per_round=1)
        create_version(task, tiny_artifacts, origin="initial")
        task.refresh_from_db()
        assert task.current_version.weight_specs
        return task

    task = await sync_to_async(make)()
    a = await connect()
    welcome_a = await receive(a, "welcome")
    b = await connect()
    welcome_b = await receive(b, "welcome")
    assert (welcome_a["invited"], welcome_b["invited"]) == (True, False)
    assert welcome_a["participantsPerRound"] == welcome_b["participantsPerRound"] == 1
    await b.send_to(text_data=json.dumps({"type": "status"}))
    status = await receive(b, "status")
    assert status["invited"] is False and status["participantsPerRound"] == 1
    await b.send_to(bytes_data=update_frame(task, fill=0.5))
    refused = await receive(b, "error")
    assert refused["code"] == "not_invited" and "next round_closed" in refused["reason"]
    await a.send_to(bytes_data=update_frame(task, fill=0.5))
    closed_a, closed_b = await receive(a, "round_closed"), await receive(b, "round_closed")
    assert closed_a["contributors"] == 1 and closed_a["nextRound"] == 2
    # Round 2 invites the one who waited; the list of ids itself never reaches a client.
    assert (closed_a["invited"], closed_b["invited"]) == (False, True)
    assert all(not isinstance(m["invited"], list) for m in (closed_a, closed_b, welcome_a, welcome_b, status))
    await a.disconnect()
    await b.disconnect()
