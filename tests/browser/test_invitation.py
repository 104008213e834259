"""An invitation link in a real browser: the session grant admits the training page, its files and its WebSocket."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.sample_data import learnable_tabular_csv
from tests.browser.train_helpers import DONE, open_train_page

pytestmark = pytest.mark.browser
TASK = "tiny_federated_invited"


def test_an_invitation_link_lets_a_browser_train_and_a_stranger_is_told_to_ask(live_platform, browser,
                                                                                 tmp_path: Path):
    base = live_platform["url"]
    ((secret,),) = live_platform["db"].query("SELECT invitation_secret FROM tasks_task WHERE id = %s", (TASK,))
    stranger, invited = browser.new_context(), browser.new_context()
    try:
        page = stranger.new_page()
        response = page.goto(f"{base}/tasks/{TASK}/train/")
        assert response.status == 403 and "Ask the task's owner" in page.inner_text("#participation-refused")
        assert page.request.get(f"{base}/tasks/{TASK}/model.json").status == 403

        page = invited.new_page()
        page.goto(f"{base}/tasks/{TASK}/join/{secret}/")
        assert page.url == f"{base}/tasks/{TASK}/train/"  # the secret is not in the address any more
        open_train_page(page, base, TASK)
        csv = tmp_path / "data.csv"
        csv.write_text(learnable_tabular_csv(80, seed=5))
        page.set_input_files("#train-connector input[data-slot=csv]", csv)
        page.wait_for_function("() => !document.getElementById('start-btn').disabled")
        page.click("#start-btn")
        page.wait_for_function(DONE, timeout=180_000)
        assert page.evaluate("window.discoTrain.state") == "done", page.evaluate("window.discoTrain.error")
        rounds = page.evaluate("window.discoFederated.rounds")
        assert len(rounds) == 1, rounds  # its update reached the server over the WebSocket, and a version came back
    finally:
        stranger.close()
        invited.close()
    log = live_platform["daphne_log"].read_text()
    assert log.count(secret) == 1  # the join request only
