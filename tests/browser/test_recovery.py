"""The training page recovers by itself from a server restart (its own daphne, embedded, on the selected database).

The page sends its first update and waits for a second participant; daphne is stopped and started again
on the same port. The page must say it is reconnecting, reconnect with its resume token (its update still
counts), and, once a Python participant joins, finish both rounds on the same versions. No fixed sleeps.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from disco_client.keras import KerasFederatedClient
from tasks.sample_data import learnable_tabular_csv
from tests.browser.train_helpers import DONE, open_train_page
from tests.live_platform import LivePlatform, daphne, free_port

pytestmark = pytest.mark.browser
TASK = "tiny_federated_pair"
HAS = "(type) => window.discoFederated.events.some((e) => e.type === type)"
DUPLICATE = "() => window.discoFederated.events.some((e) => e.type === 'error' && e.code === 'duplicate')"


def test_the_page_reconnects_after_a_restart_and_finishes_its_rounds(browser, tmp_path: Path):
    # Embedded: the in-memory channel layer and the in-process jobs go down with the process, the worst case.
    platform = LivePlatform(tmp_path, redis_url="", DISCO_TASK_PROVIDERS="tests.browser.tiny_tasks.TinyFederatedPair")
    platform.manage("migrate", "--noinput")
    platform.manage("load_default_tasks", "--only", TASK)
    env = platform.env
    port = free_port()
    rows = learnable_tabular_csv(240, seed=7).strip().splitlines()
    (tmp_path / "page.csv").write_text("\n".join([rows[0], *rows[1:121]]) + "\n")
    python_part = np.array([[float(v) for v in line.split(",")] for line in rows[121:]], dtype=np.float32)

    context = browser.new_context()
    page = context.new_page()
    try:
        with daphne(env, tmp_path / "daphne-1.log", port=port) as base:
            open_train_page(page, base, TASK)
            page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / "page.csv")
            page.wait_for_function("() => !document.getElementById('start-btn').disabled")
            page.click("#start-btn")
            page.wait_for_function(HAS, arg="accepted", timeout=120_000)  # round 1 now waits for a second update
        page.wait_for_function(HAS, arg="reconnecting", timeout=60_000)
        assert "reconnecting" in page.inner_text("#fed-status")
        with daphne(env, tmp_path / "daphne-2.log", port=port) as base:
            page.wait_for_function(HAS, arg="reconnected", timeout=120_000)
            client = KerasFederatedClient(base, TASK, log=lambda _: None)
            with ThreadPoolExecutor(max_workers=1) as pool:
                python_run = pool.submit(asyncio.run, client.run(python_part[:, :4], python_part[:, 4:5], rounds=2))
                page.wait_for_function(DONE, timeout=180_000)
                results = python_run.result(timeout=180)
            state = page.evaluate("window.discoTrain.state")
            error = page.evaluate("window.discoTrain.error")
            rounds = page.evaluate("window.discoFederated.rounds")
    finally:
        context.close()
        platform.stop()
    assert state == "done", error
    # The page's round-1 update survived the restart: round 1 closed with both participants.
    assert [(r["outcome"], r["version"]) for r in rounds] == [("round_closed", 2), ("round_closed", 3)]
    assert rounds[0]["contributors"] == 2
    assert [r.version for r in results] == [2, 3]


def test_a_reloaded_page_resumes_as_the_same_participant_and_its_update_still_counts(browser, tmp_path: Path):
    platform = LivePlatform(tmp_path, redis_url="", DISCO_TASK_PROVIDERS="tests.browser.tiny_tasks.TinyFederatedPair")
    platform.manage("migrate", "--noinput")
    platform.manage("load_default_tasks", "--only", TASK)
    rows = learnable_tabular_csv(240, seed=8).strip().splitlines()
    (tmp_path / "page.csv").write_text("\n".join([rows[0], *rows[1:121]]) + "\n")
    python_part = np.array([[float(v) for v in line.split(",")] for line in rows[121:]], dtype=np.float32)
    context = browser.new_context()
    page = context.new_page()

    def start_training() -> None:
        open_train_page(page, base, TASK)
        page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / "page.csv")
        page.wait_for_function("() => !document.getElementById('start-btn').disabled")
        page.click("#start-btn")

    try:
        base = platform.daphne().url
        start_training()
        page.wait_for_function(HAS, arg="accepted", timeout=120_000)  # round 1 waits for a second update
        before = page.evaluate("window.discoFederated.participantId")
        page.reload()  # the page's state is gone; its tab kept the resume token
        start_training()
        welcome = page.wait_for_function(
            "() => window.discoFederated.events.find((e) => e.type === 'welcome')", timeout=120_000).json_value()
        # Its update for round 1, sent again, is already in: counted once, and the page waits for the round.
        page.wait_for_function(DUPLICATE, timeout=120_000)
        after = page.evaluate("window.discoFederated.participantId")
        client = KerasFederatedClient(base, TASK, log=lambda _: None)
        with ThreadPoolExecutor(max_workers=1) as pool:
            python_run = pool.submit(asyncio.run, client.run(python_part[:, :4], python_part[:, 4:5], rounds=2))
            page.wait_for_function(DONE, timeout=180_000)
            results = python_run.result(timeout=180)
        state, error = page.evaluate("[window.discoTrain.state, window.discoTrain.error]")
        rounds = page.evaluate("window.discoFederated.rounds")
    finally:
        context.close()
        platform.stop()
    assert before and after == before
    assert welcome["resumed"] is True and welcome["contributed"] == 1 and welcome["waitingFor"] == 1
    assert state == "done", error
    # Had the reloaded page joined as someone new, its two updates would have closed round 1 without Python.
    assert [(r["outcome"], r["version"]) for r in rounds] == [("round_closed", 2), ("round_closed", 3)]
    assert [r.version for r in results] == [2, 3]
    assert rounds[0]["contributors"] == 2
