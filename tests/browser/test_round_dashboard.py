"""The round dashboard in Chromium: the owner watches a federated round close, live, without a reload."""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from disco_client.keras import KerasFederatedClient
from tasks.sample_data import learnable_tabular_csv

pytestmark = pytest.mark.browser
TASK = "tiny_federated"  # three participants a round (tests/browser/tiny_tasks.py)
ADMIN_PASSWORD = "browser-test-admin-pw"  # conftest.py's live_platform


def _log_in(page, base: str, next_path: str) -> None:
    page.goto(f"{base}/accounts/login/?next={next_path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(re.escape(next_path) + "$"))


async def _three_participants(base: str) -> list:
    rows = learnable_tabular_csv(150, seed=9).strip().splitlines()[1:]
    data = np.array([[float(v) for v in line.split(",")] for line in rows], dtype=np.float32)
    # A loaded test machine can take longer than the default quarter deadline to open a socket.
    clients = [KerasFederatedClient(base, TASK, log=lambda _: None, waits={"open": 60}) for _ in range(3)]
    parts = [data[i * 50:(i + 1) * 50] for i in range(3)]
    return await asyncio.gather(*(c.run(p[:, :4], p[:, 4:5], rounds=1) for c, p in zip(clients, parts, strict=True)))


def test_the_owner_sees_a_round_close_live(live_platform, page, tmp_path: Path):
    base = live_platform["url"]
    before = json.loads(urllib.request.urlopen(f"{base}/api/tasks/{TASK}/").read())["currentVersion"]
    path = f"/tasks/{TASK}/rounds/"
    _log_in(page, base, path)
    page.wait_for_function("() => window.discoRounds && window.discoRounds.socket === 'live'", timeout=30_000)
    assert page.inner_text("#live-status") == "Live"
    page.evaluate("() => { window.notReloaded = true; }")  # gone if the page reloads
    closed_before = page.evaluate("() => window.discoRounds.rows.filter((r) => r.status === 'closed').length")

    with ThreadPoolExecutor(max_workers=1) as pool:
        results = pool.submit(asyncio.run, _three_participants(base)).result(timeout=180)
    number = results[0][0].round
    assert all(r[0].outcome == "round_closed" and r[0].version == before + 1 for r in results)

    page.wait_for_function("(n) => window.discoRounds.rows.some((r) => r.number === n && r.status === 'closed')",
                           arg=number, timeout=30_000)
    assert page.evaluate("() => window.notReloaded") is True
    row = page.evaluate("(n) => window.discoRounds.rows.find((r) => r.number === n)", number)
    assert row["contributors"] == 3 and row["bytesReceived"] > 0
    assert row["resultVersion"]["number"] == before + 1
    assert row["resultVersion"]["modelUrl"].endswith(f"/tasks/{TASK}/versions/{before + 1}/model.json")
    assert page.evaluate("() => window.discoRounds.events.some((e) => e.event === 'round_closed')")
    # the table has the row, with its link, and each chart a point for the round
    cells = page.locator(f"#rounds-table tr[data-round='{number}'] td")
    assert cells.nth(1).inner_text() == "Closed" and cells.nth(4).inner_text() == "3"
    link = page.locator(f"#rounds-table tr[data-round='{number}'] a", has_text=f"v{before + 1}")
    assert link.get_attribute("href").endswith(f"/versions/{before + 1}/model.json")
    for chart in ("participants-chart", "duration-chart", "bytes-chart"):
        labels = page.evaluate("(id) => Chart.getChart(id).data.labels", chart)
        assert str(number) in labels, (chart, labels)
    participants = page.evaluate("() => Chart.getChart('participants-chart').data.datasets[0].data")
    labels = page.evaluate("() => Chart.getChart('participants-chart').data.labels")
    assert participants[labels.index(str(number))] == 3
    page_rows = page.evaluate("() => window.discoRounds.rows")
    others = len([r for r in page_rows if r["status"] in ("failed", "superseded")])
    assert int(page.inner_text("#fact-finished")) == closed_before + 1 + others

    folder = Path(os.environ.get("DISCO_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "round-dashboard.png"), full_page=True)

    # The task page's public summary, with the owner's link to the dashboard.
    page.goto(f"{base}/tasks/{TASK}/")
    assert int(page.inner_text("#rounds-count")) == closed_before + 1 + others  # the same count as the dashboard
    assert page.inner_text("#rounds-last").startswith(f"Round {number}: closed")
    assert page.get_attribute("#rounds-dashboard-link", "href") == path
    page.locator("#rounds-summary").screenshot(path=str(folder / "task-page-rounds-summary.png"))


# Rounds in every status, made with the model layer in a process of the platform's own (its database).
HISTORY = """
from tasks.conversion import keras_model_to_tfjs
from tasks.models import Task
from tests.aggregation.round_fixtures import federated_history
from tests.conftest import TABULAR_TASK, build_tiny_keras_model
task = Task(id="watched", **{**TABULAR_TASK, "aggregator": "median"})
task.full_clean()
task.save()
federated_history(task, keras_model_to_tfjs(build_tiny_keras_model()),
                  keras_model_to_tfjs(build_tiny_keras_model(seed=1)))
"""


def test_failed_and_superseded_rounds_show_their_reasons_and_metrics_are_charted(live_platform, page,
                                                                                 tmp_path: Path):
    """Rounds in every status as staff see them (the owner sees the same page)."""
    from tests.aggregation.round_fixtures import FAILED_REASON, SUPERSEDED_REASON

    live_platform["platform"].manage("shell", "-c", HISTORY)
    _log_in(page, live_platform["url"], "/tasks/watched/rounds/")
    page.wait_for_function("() => document.querySelectorAll('#rounds-table tr[data-round]').length === 4")
    failed = page.locator("#rounds-table tr[data-round='2']")
    assert failed.get_attribute("class") == "is-failed"
    assert failed.locator(".outcome").inner_text() == FAILED_REASON
    assert page.locator("#rounds-table tr[data-round='3'] .outcome").inner_text() == SUPERSEDED_REASON
    assert page.locator("#rounds-table tr[data-round='1'] td").nth(7).inner_text() == "85.0 % · 0.410"
    assert page.is_hidden("#metrics-empty")
    accuracy = page.evaluate("() => Chart.getChart('metrics-chart').data.datasets[0].data")
    assert accuracy == [0.85, None, None, None]
    assert page.inner_text("#fact-failed") == "1" and page.inner_text("#fact-accuracy") == "85.0 %"
    folder = Path(os.environ.get("DISCO_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "round-dashboard-statuses.png"), full_page=True)
