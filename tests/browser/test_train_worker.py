"""Training runs in a dedicated worker: the page's thread stays free (no long task) and Stop is prompt.

A PerformanceObserver for 'longtask' is installed before training; a small CNN (the tiny shapes task,
16x16 images) trains its 6 epochs in the worker, and no main-thread task over 200 ms happens meanwhile.
Stop takes effect within one batch: at most the batch running when it was pressed ends after it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.sample_data import learnable_tabular_csv
from tests.browser.train_helpers import DONE, open_train_page, write_shapes

pytestmark = pytest.mark.browser
CLOCK_SLACK_MS = 3.0

OBSERVE_LONG_TASKS = """() => {
    window.longTasks = [];
    new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.longTasks.push({start: e.startTime, duration: e.duration});
    }).observe({type: 'longtask'});
}"""


def test_a_cnn_trains_in_the_worker_without_long_tasks_on_the_page(live_platform, page, tmp_path: Path):
    open_train_page(page, live_platform["url"], "tiny_shapes")
    assert page.evaluate("window.discoTrain.engine") == "worker"
    groups = write_shapes(tmp_path / "train", 240, seed=0)
    for label, files in groups.items():
        page.set_input_files(f"#train-connector input[data-slot='group:{label}']", files)
    page.wait_for_function("() => !document.getElementById('start-btn').disabled", timeout=30_000)
    page.evaluate(OBSERVE_LONG_TASKS)

    page.evaluate("() => { window.trainingFrom = performance.now(); }")
    page.click("#start-btn")
    page.wait_for_function(DONE, timeout=180_000)
    result = page.evaluate("""() => ({state: window.discoTrain.state, history: window.discoTrain.history,
        batches: window.discoTrain.batches.length, to: performance.now(), from: window.trainingFrom,
        longTasks: window.longTasks, backend: window.discoTrain.backend})""")

    assert result["state"] == "done"
    assert len(result["history"]) == 6
    assert result["batches"] == 6 * 12  # 192 training images in batches of 16
    assert result["to"] - result["from"] > 200  # training took long enough for the check to mean something
    during = [t for t in result["longTasks"]
              if t["start"] + t["duration"] > result["from"] and t["start"] < result["to"]]
    assert not [t for t in during if t["duration"] > 200], during
    assert result["history"][-1]["val_acc"] >= 0.9  # and it learned, in the worker


def test_stop_takes_effect_within_one_batch(live_platform, page, tmp_path: Path):
    (tmp_path / "train.csv").write_text(learnable_tabular_csv(4000, seed=1))
    open_train_page(page, live_platform["url"], "tiny_tabular")
    assert page.evaluate("window.discoTrain.engine") == "worker"
    page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / "train.csv")
    page.wait_for_function("() => !document.getElementById('start-btn').disabled", timeout=30_000)
    page.click("#start-btn")
    page.wait_for_function("() => window.discoTrain.batches.length >= 20", timeout=60_000)
    page.click("#stop-btn")
    page.wait_for_function(DONE, timeout=60_000)
    result = page.evaluate("""() => ({state: window.discoTrain.state, stopAt: window.discoTrain.stopAt,
        batches: window.discoTrain.batches})""")

    assert result["state"] == "stopped"
    total = 8 * 200  # 3200 training rows in batches of 16, 8 epochs
    assert 20 <= len(result["batches"]) < total
    # The batch times are the worker's clock (its timeOrigin + now), stopAt the page's: two contexts' origins
    # can disagree by a millisecond, so a batch that began just before the click may read as just after it.
    after_stop = [b for b in result["batches"] if b["ended"] > result["stopAt"] + CLOCK_SLACK_MS]
    assert len(after_stop) <= 1, after_stop
    started_after = [b for b in result["batches"] if b["started"] > result["stopAt"] + CLOCK_SLACK_MS]
    assert not started_after, (result["stopAt"], started_after)
    assert "Stopped after" in page.inner_text("#train-status")
