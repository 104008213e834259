"""Upload slots (aggregation/upload_slots.py): how many announced updates a web process lets clients send at once."""

from __future__ import annotations

import pytest

from aggregation.upload_slots import UploadSlots


def test_slots_are_granted_at_once_while_free_then_in_the_order_asked():
    slots, granted = UploadSlots(2), []
    for name in "abcd":
        slots.request(name, lambda name=name: granted.append(name))
    assert granted == ["a", "b"] and list(slots.waiting) == ["c", "d"]
    slots.release("b")
    assert granted == ["a", "b", "c"] and slots.holders == {"a", "c"}
    slots.release("d")  # left while waiting: never granted
    slots.release("a")
    slots.release("c")
    assert granted == ["a", "b", "c"] and not slots.holders and not slots.waiting


def test_a_new_request_replaces_the_holders_old_one_and_a_release_without_a_slot_changes_nothing():
    slots, granted = UploadSlots(1), []
    slots.request("a", lambda: granted.append("a1"))
    slots.request("b", lambda: granted.append("b"))
    slots.request("a", lambda: granted.append("a2"))  # a announced again: its slot goes to b, a queues behind
    assert granted == ["a1", "b"] and list(slots.waiting) == ["a"]
    slots.release("nobody")
    assert slots.holders == {"b"}
    slots.release("b")
    assert granted == ["a1", "b", "a2"]


def test_the_size_comes_from_the_setting_when_not_given(settings):
    settings.DISCO_UPLOAD_SLOTS = 3
    assert UploadSlots().size == 3
    settings.DISCO_UPLOAD_SLOTS = 0
    assert UploadSlots().size == 1  # never zero: nothing could ever be sent


@pytest.mark.parametrize("size", [1, 4])
def test_never_more_holders_than_slots(size):
    slots, granted = UploadSlots(size), []
    for i in range(20):
        slots.request(i, lambda i=i: granted.append(i))
        assert len(slots.holders) <= size
    for i in range(20):
        slots.release(i)
        assert len(slots.holders) <= size
    assert granted == list(range(20))
