"""Two browser participants and one Python participant train a federated task together.

The first test is marked ``both_modes``: `make test` runs it embedded and again on PostgreSQL with the Redis
channel layer and a real aggregation worker (``.ci/run`` starts with the latter), and it checks which ran.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from disco_client.keras import KerasFederatedClient
from tasks.sample_data import learnable_tabular_csv
from tests.browser.train_helpers import DONE, open_train_page
from tests.live_platform import LivePlatform, Worker

pytestmark = pytest.mark.browser
TASK = "tiny_federated"


def worker_aggregations(platform: LivePlatform) -> int:
    """Rounds the platform's aggregation worker process has aggregated (0 when embedded: no worker)."""
    logs = [p.log_text() for p in platform.processes if isinstance(p, Worker) and p.queue == "aggregation"]
    return sum(len(re.findall(r"aggregation\.tasks\.aggregate_round\[[^\]]+\] succeeded", log)) for log in logs)


def version_weights(base: str, number: int, task: str = TASK) -> np.ndarray:
    prefix = f"{base}/tasks/{task}/versions/{number}/"
    manifest = json.loads(urllib.request.urlopen(prefix + "model.json").read())["weightsManifest"]
    data = b"".join(urllib.request.urlopen(prefix + p).read() for g in manifest for p in g["paths"])
    return np.frombuffer(data, dtype="<f4")


@pytest.mark.both_modes
def test_two_pages_and_a_python_participant_converge_to_the_same_weights(live_platform, browser, tmp_path: Path):
    base, platform = live_platform["url"], live_platform["platform"]
    aggregated_before = worker_aggregations(platform)
    before = json.loads(urllib.request.urlopen(f"{base}/api/tasks/{TASK}/").read())["currentVersion"]
    csv = learnable_tabular_csv(240, seed=4)
    rows = csv.strip().splitlines()
    header, body = rows[0], rows[1:]
    for i in range(2):
        (tmp_path / f"part{i}.csv").write_text("\n".join([header, *body[i * 80:(i + 1) * 80]]) + "\n")
    python_part = np.array([[float(v) for v in line.split(",")] for line in body[160:]], dtype=np.float32)
    x, y = python_part[:, :4], python_part[:, 4:5]

    client = KerasFederatedClient(base, TASK, log=lambda _: None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        python_run = pool.submit(asyncio.run, client.run(x, y, rounds=2))
        contexts = [browser.new_context() for _ in range(2)]
        pages = [c.new_page() for c in contexts]
        try:
            for i, page in enumerate(pages):
                open_train_page(page, base, TASK)
                assert page.is_checked("#collab-toggle")
                page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / f"part{i}.csv")
                page.wait_for_function("() => !document.getElementById('start-btn').disabled")
                page.click("#start-btn")
            for page in pages:
                page.wait_for_function(DONE, timeout=180_000)
                assert page.evaluate("window.discoTrain.state") == "done", page.evaluate("window.discoTrain.error")
            results = python_run.result(timeout=180)
            rounds = [page.evaluate("window.discoFederated.rounds") for page in pages]
            status = pages[0].inner_text("#fed-status")
            weights = [np.concatenate([np.asarray(w["values"], np.float32) for w in page.evaluate(
                "window.discoTrain.weights()")]) for page in pages]
            evaluations = [page.evaluate("window.discoFederated.evaluations") for page in pages]
            logs = [page.evaluate("document.getElementById('train-log').textContent") for page in pages]
        finally:
            for c in contexts:
                c.close()
    final = before + 2
    assert [r["version"] for r in rounds[0]] == [before + 1, final] == [r["version"] for r in rounds[1]]
    assert all(r["contributors"] == 3 for r in rounds[0])
    assert [r.version for r in results] == [before + 1, final]
    assert f"averaged into version {final}" in status
    served = version_weights(base, final)
    for vector in weights:  # each browser ends on the global model, as does the Python participant
        np.testing.assert_array_equal(vector, served)
    by_name = {v.name.split(":")[0]: v.numpy().ravel() for v in client.model.weights}
    np.testing.assert_array_equal(np.concatenate([by_name[name] for name in client.weight_order]), served)
    # Federated evaluation: each page and the Python participant scored both rounds' results on their validation
    # splits and reported them; each round keeps the total of their counts.
    numbers = [r["round"] for r in rounds[0]]
    for page_reports, log in zip(evaluations, logs, strict=True):
        assert [(e["round"], e["version"], e["recorded"]) for e in page_reports] == [
            (n, v, True) for n, v in zip(numbers, [before + 1, final], strict=True)]
        assert all(e["samples"] == 16 and 0 <= e["accuracy"] <= 1 and e["loss"] >= 0 for e in page_reports)
        assert f"Round {numbers[-1]}: validation loss " in log and "on 16 samples (reported)" in log
    assert all(r.reported and r.val_samples == 16 for r in results)
    stored = platform.db.query("SELECT number, val_samples FROM aggregation_round WHERE task_id = %s AND number IN "
                               "(%s, %s) ORDER BY number", (TASK, *numbers))
    assert stored == [(n, 16 * 3) for n in numbers]
    if not platform.embedded:  # the two rounds went through Redis and the worker process aggregated them
        assert worker_aggregations(platform) == aggregated_before + 2


def test_two_pages_on_a_private_task_share_clipped_changes_and_show_the_privacy_spent(live_platform, browser,
                                                                                       tmp_path: Path):
    from tests.browser.tiny_tasks import TinyFederatedPrivate

    task, base = "tiny_federated_private", live_platform["url"]
    before = json.loads(urllib.request.urlopen(f"{base}/api/tasks/{task}/").read())["currentVersion"]
    start = version_weights(base, before, task).astype(np.float64)
    rows = learnable_tabular_csv(160, seed=6).strip().splitlines()
    contexts = [browser.new_context() for _ in range(2)]
    try:
        pages = [c.new_page() for c in contexts]
        for i, page in enumerate(pages):
            (tmp_path / f"private{i}.csv").write_text("\n".join([rows[0], *rows[1 + i * 80:1 + (i + 1) * 80]]) + "\n")
            open_train_page(page, base, task)
            page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / f"private{i}.csv")
            page.wait_for_function("() => !document.getElementById('start-btn').disabled")
            page.click("#start-btn")
        for page in pages:
            page.wait_for_function(DONE, timeout=180_000)
            assert page.evaluate("window.discoTrain.state") == "done", page.evaluate("window.discoTrain.error")
        page.wait_for_function("() => window.discoPeers.privacy.length === 1", timeout=30_000)
        spent = page.evaluate("window.discoPeers.privacy")[0]
        status = page.inner_text("#privacy-status")
    finally:
        for c in contexts:
            c.close()
    assert 0 < spent["epsilon"] < float("inf") and spent["rounds"] == 1
    assert "(ε, δ) spent after 1 round" in status and "clipping 0.005, noise scale 0.01" in status
    # Each page sent start + (its change clipped to C, plus noise of std 0.01 C per coordinate); their
    # mean moved at most C plus a little noise, where unclipped training moves the weights several times C.
    change = np.linalg.norm(version_weights(base, before + 1, task) - start)
    assert 0 < change <= 1.5 * TinyFederatedPrivate.clipping_radius, change
