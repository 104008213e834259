"""A contributor creates a task in a real browser: sign up, fill the form, fix a mistake, upload a
Keras .h5 model, watch its conversion finish, and find the task in the catalogue once an admin publishes it.

Set ``DISCO_SHOTS=/some/dir`` to keep screenshots of each step at 1280 and 390 pixels wide.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ADMIN_PASSWORD = "browser-test-admin-pw"  # set by the live_platform fixture
WIDTHS = (1280, 390)


def save_heart_model(path: Path) -> Path:
    """A tf_keras model for the task's 3 input columns and one sigmoid output, saved as .h5."""
    from disco_client.keras_env import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.layers.Input(shape=(3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.save(path, save_format="h5")
    return path


def shoot(page, name: str) -> None:
    """Full-page screenshots at each width when DISCO_SHOTS is set."""
    folder = os.environ.get("DISCO_SHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    current = page.viewport_size
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=f"{folder}/{name}-{width}.png", full_page=True)
    page.set_viewport_size(current)


def create_task_as_contributor(page, base: str, model_file: Path, task_id: str) -> None:
    """Everything a contributor does, up to the conversion finishing on the task's page."""
    username, title = f"contrib-{task_id}", f"Heart disease {task_id}"
    # Sign up from the navigation.
    page.goto(base + "/")
    page.get_by_role("link", name="Sign up").click()
    page.fill("#id_username", username)
    page.fill("#id_password1", "a-Long-pass-phrase-9")
    page.fill("#id_password2", "a-Long-pass-phrase-9")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("link", name="Create a task").first.click()
    page.wait_for_url(re.compile(r"/tasks/new/$"))
    shoot(page, "form-empty")

    # Only the chosen data type's fields are visible; switching shows the others.
    assert page.is_visible("#id_input_columns") and not page.is_visible("#id_image_height")
    page.select_option("#id_data_type", "image")
    assert page.is_visible("#id_image_height") and not page.is_visible("#id_input_columns")
    page.select_option("#id_data_type", "tabular")
    assert not page.is_visible("#id_clipping_radius")
    page.check("#id_dp_enabled")
    assert page.input_value("#id_clipping_radius") == "1.0" and page.input_value("#id_noise_scale") == "1.0"
    page.uncheck("#id_dp_enabled")
    assert not page.is_visible("#id_agg_beta")
    # The parameters shown are the chosen aggregator's and server optimizer's, as the embedded registry says.
    page.select_option("#id_aggregator", "multi_krum")
    assert page.is_visible("#id_agg_f") and page.is_visible("#id_agg_m") and not page.is_visible("#id_agg_beta")
    assert not page.is_visible("#id_opt_momentum")
    page.select_option("#id_server_optimizer", "fedavgm")
    assert page.is_visible("#id_opt_fedavgm_lr") and page.is_visible("#id_opt_momentum")
    assert not page.is_visible("#id_opt_fedadam_lr") and page.input_value("#id_opt_momentum") == "0.9"
    page.select_option("#id_server_optimizer", "none")
    page.select_option("#id_aggregator", "mean")
    assert not page.is_visible("#id_agg_f") and not page.is_visible("#id_opt_fedavgm_lr")

    # Fill it, with a mistake: 5 epochs cannot be split into rounds of 2.
    page.fill("#id_title", title)
    page.fill("#id_id", task_id)
    page.fill("#id_summary_preview", "Predict heart disease from three measurements.")
    page.fill("#id_summary_overview", "Hospitals train together without sharing patient records.")
    page.fill("#id_input_columns", "age\nchol, thalach")
    page.fill("#id_output_columns", "target")
    page.check("input[name=preprocessing_tabular][value=sanitize]")
    page.fill("#id_epochs", "5")
    page.fill("#id_round_duration", "2")
    page.set_input_files("#id_model_files", str(model_file))
    page.get_by_role("button", name="Create task").click()
    page.wait_for_load_state()

    # The inline error sits under the field; every value is kept; the file must be chosen again.
    error = page.locator("#id_round_duration ~ small.field-error")
    assert "must be a multiple of the round duration" in error.inner_text()
    assert page.input_value("#id_title") == title
    assert page.input_value("#id_input_columns") == "age\nchol, thalach"
    assert page.is_checked("input[name=preprocessing_tabular][value=sanitize]")
    assert "Select your model files again" in page.inner_text("#section-model")
    shoot(page, "form-errors")

    page.fill("#id_epochs", "4")
    page.set_input_files("#id_model_files", str(model_file))
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(rf"/tasks/{task_id}/$"))
    assert "being converted" in page.inner_text(".messages")

    # The status updates live until the converted model shows on the page, without a reload.
    status = page.locator("#job-status [data-job-text]")
    page.wait_for_function(
        "() => /^(Done|Failed)/.test(document.querySelector('#job-status [data-job-text]').textContent)",
        timeout=120_000)
    assert status.inner_text() == "Done: version 1", status.inner_text()
    page.wait_for_selector("#model-block dl.model-facts")
    assert "v1" in page.inner_text("#model-block")
    shoot(page, "task-page-status")

    page.get_by_role("link", name="My tasks").click()
    assert "Awaiting review" in page.inner_text("table.my-tasks")
    shoot(page, "my-tasks")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(base + "/")


def publish_as_admin(page, base: str, task_id: str) -> None:
    page.goto(f"{base}/accounts/login/?next=/admin/tasks/task/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/admin/tasks/task/"))
    page.check(f"input[name=_selected_action][value='{task_id}']")
    page.select_option("select[name=action]", "publish")
    page.click("button[name=index]")
    page.wait_for_load_state()
    page.goto(base + "/")
    page.get_by_role("button", name="Log out").click()


def test_a_contributor_creates_a_task_with_a_keras_model(live_platform, browser, tmp_path):
    base = live_platform["url"]
    task_id = f"heart-{uuid.uuid4().hex[:6]}"
    model_file = save_heart_model(tmp_path / "heart.h5")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        create_task_as_contributor(page, base, model_file, task_id)
        title = f"Heart disease {task_id}"
        # Not in the public catalogue until an administrator publishes it.
        page.goto(base + "/tasks/")
        assert title not in page.inner_text("main")
        publish_as_admin(page, base, task_id)
        page.goto(base + "/tasks/")
        card = page.locator("article.task-card", has_text=title)
        assert card.count() == 1
        card.get_by_role("link").first.click()
        page.wait_for_url(re.compile(rf"/tasks/{task_id}/$"))
        assert "Edit" not in [b.inner_text() for b in page.locator(".owner-bar a").all()]
        model = page.evaluate("async (url) => (await (await fetch(url)).json()).format", f"/tasks/{task_id}/model.json")
        assert model == "layers-model"
    finally:
        context.close()
