"""``manage.py simulate``'s options that need no server: refusals, and how attackers meet the honest updates."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from aggregation.management.commands.simulate import Board


@pytest.mark.parametrize(("args", "message"), [
    (["--partition", "zipf"], "Unknown partition 'zipf'"),
    (["--byzantine", "2"], "--byzantine needs --attack"),
    (["--byzantine", "3", "--attack", "ipm"], "--byzantine must leave at least one honest participant: 0 <= K < 3"),
])
def test_bad_options_are_refused_before_connecting(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("simulate", "--task", "titanic", "--participants", "3", "--server", "http://127.0.0.1:9", *args)


def test_omniscient_attackers_wait_for_the_rounds_honest_updates():
    base = np.zeros(3, dtype=np.float32)
    board = Board("ipm", attackers=1, honest_count=2, strength=2.0, seed=0, wait=30)

    async def round_of_three():
        # Tasks start in the order they are made: the attacker runs first and finds nothing posted, so its
        # result can hold both honest updates only if it waited for them.
        sent = asyncio.create_task(board.attacker(0)(np.ones(3, dtype=np.float32), base, 5))
        posts = [asyncio.create_task(board.honest(np.array(v, dtype=np.float32), base, 5))
                 for v in ([1, 2, 3], [3, 2, 1])]
        return [await p for p in posts], await sent

    honest, sent = asyncio.run(round_of_three())
    np.testing.assert_array_equal(honest[0], [1, 2, 3])  # honest participants send what they trained
    np.testing.assert_allclose(sent, [-4.0, -4.0, -4.0])  # -2 x the honest mean (2, 2, 2)


def test_attackers_that_wait_too_long_use_what_was_posted():
    base = np.zeros(2, dtype=np.float32)
    board = Board("ipm", attackers=1, honest_count=3, strength=1.0, seed=0, wait=0.05)

    async def short_round():
        await board.honest(np.array([2.0, 4.0], dtype=np.float32), base, 1)
        return await board.attacker(0)(np.ones(2, dtype=np.float32), base, 1)

    np.testing.assert_allclose(asyncio.run(short_round()), [-2.0, -4.0])
