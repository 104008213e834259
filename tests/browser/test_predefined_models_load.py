"""Every predefined task's model.json loads with plain tf.loadLayersModel in headless Chromium."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tasks.providers import default_providers

pytestmark = pytest.mark.browser
PREDEFINED = ["cifar10", "lus_covid", "mnist", "simple_face", "titanic", "wikitext"]


@pytest.fixture(scope="module")
def keras_parameter_counts() -> dict[str, int]:
    return {p.get_task().id: p.get_model().count_params() for p in default_providers()}


def test_the_task_list_shows_all_six_predefined_tasks(live_platform, page):
    page.goto(live_platform["url"] + "/tasks/")
    text = page.locator("main").inner_text()
    for title in ["Handwritten Digit Recognition", "CIFAR10", "Titanic Prediction", "Simple Face",
                  "Lung Ultrasound Image Classification", "GPT Language Modeling"]:
        assert title in text
    listed = json.load(urllib.request.urlopen(live_platform["url"] + "/api/tasks/"))
    versions = {t["id"]: t["currentVersion"] for t in listed}
    assert set(PREDEFINED) <= set(versions)  # tests may add tiny tasks of their own
    assert all(versions[task_id] == 1 for task_id in PREDEFINED)


def test_each_model_loads_in_tfjs_with_the_keras_parameter_count(live_platform, page, keras_parameter_counts):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_platform["url"] + "/")
    # The site's CSP refuses eval: the shim keeps tf.min.js's bundled regenerator from needing it.
    page.add_script_tag(url=live_platform["url"] + "/static/disco/tfjs_csp_shim.js")
    page.add_script_tag(url=live_platform["url"] + "/static/vendor/tfjs/tf.min.js")
    loaded = page.evaluate(
        """async (ids) => {
            const out = {};
            for (const id of ids) {
                const model = await tf.loadLayersModel(`/tasks/${id}/model.json`);
                out[id] = {params: model.countParams(), inputs: model.inputs.map(t => t.shape),
                           outputs: model.outputs.map(t => t.shape), version: tf.version.tfjs};
                model.dispose();
            }
            return out;
        }""",
        PREDEFINED,
    )
    assert errors == []
    assert {k: v["params"] for k, v in loaded.items()} == keras_parameter_counts
    assert loaded["titanic"]["version"] == "4.22.0"
    assert loaded["mnist"]["inputs"] == [[None, 28, 28, 3]] and loaded["mnist"]["outputs"] == [[None, 10]]
    assert loaded["wikitext"]["inputs"] == [[None, 128], [None, 128], [None, 128, 128]]
    assert loaded["wikitext"]["outputs"] == [[None, 128, 257]]


def test_a_loaded_model_predicts_and_trains(live_platform, page):
    page.goto(live_platform["url"] + "/")
    # The site's CSP refuses eval: the shim keeps tf.min.js's bundled regenerator from needing it.
    page.add_script_tag(url=live_platform["url"] + "/static/disco/tfjs_csp_shim.js")
    page.add_script_tag(url=live_platform["url"] + "/static/vendor/tfjs/tf.min.js")
    result = page.evaluate(
        """async () => {
            const model = await tf.loadLayersModel('/tasks/titanic/model.json');
            model.compile({optimizer: 'adam', loss: 'binaryCrossentropy'});
            const x = tf.randomUniform([16, 5]), y = tf.randomUniform([16, 1]).round();
            const history = await model.fit(x, y, {epochs: 2, batchSize: 8});
            const p = model.predict(x);
            return {loss: history.history.loss, shape: p.shape};
        }"""
    )
    assert result["shape"] == [16, 1]
    assert len(result["loss"]) == 2 and all(loss == loss and loss > 0 for loss in result["loss"])  # no NaN
