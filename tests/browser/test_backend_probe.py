"""The training page measures one training batch per backend and trains on the fastest; the selector overrides it."""

from __future__ import annotations

import re

import pytest

from tests.browser.train_helpers import open_train_page

pytestmark = pytest.mark.browser


def test_the_probe_times_the_backends_and_shows_the_figures(live_platform, page):
    open_train_page(page, live_platform["url"], "tiny_tabular")
    probe = page.evaluate("window.discoTrain.probe")
    figures = {f["backend"]: f for f in probe["figures"]}
    assert set(figures) == {"wasm", "webgl", "cpu"}
    assert figures["wasm"]["status"] == "ok" and 0 < figures["wasm"]["ms"] < 1000
    measured = [f for f in probe["figures"] if f["status"] == "ok"]
    assert probe["measured"] is True
    assert probe["backend"] == min(measured, key=lambda f: f["ms"])["backend"]
    assert page.evaluate("window.discoTrain.backend") == probe["backend"]
    info = page.inner_text("#backend-info")
    assert "fastest measured here" in info
    shown = re.search(r"wasm (\d+\.\d) ms", info)
    assert shown and float(shown.group(1)) == round(figures["wasm"]["ms"], 1)
    assert "Backend probe" in page.evaluate("document.getElementById('train-log').textContent")

    page.select_option("#backend-select", "cpu")
    page.wait_for_function("() => window.discoTrain.backend === 'cpu'")
    assert "chosen by you" in page.inner_text("#backend-info")
    page.select_option("#backend-select", "auto")
    page.wait_for_function("(b) => window.discoTrain.backend === b", arg=probe["backend"])
    assert "fastest measured here" in page.inner_text("#backend-info")


def test_the_probe_leaves_out_wasm_for_convolutions(live_platform, page):
    open_train_page(page, live_platform["url"], "tiny_shapes")
    figures = {f["backend"]: f for f in page.evaluate("window.discoTrain.probe.figures")}
    assert figures["wasm"]["status"] == "unable" and "Conv2DBackpropFilter" in figures["wasm"]["reason"]
    assert page.evaluate("window.discoTrain.backend") in ("webgl", "cpu")
    assert "wasm cannot train this model" in page.inner_text("#backend-info")
