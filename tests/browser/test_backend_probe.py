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
    assert set(figures) == {"webgpu", "wasm", "webgl", "cpu"}
    # Headless Chromium has navigator.gpu but no adapter without --enable-unsafe-webgpu (see test_webgpu.py).
    assert figures["webgpu"]["status"] == "unable"
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


def test_the_probe_measures_wasm_on_convolutions_with_the_gradient_kernels(live_platform, page):
    open_train_page(page, live_platform["url"], "tiny_shapes")
    figures = {f["backend"]: f for f in page.evaluate("window.discoTrain.probe.figures")}
    # wasm_grad_kernels.js gives wasm the convolution gradients TF.js 4.22 lacks: it is timed, not left out.
    assert figures["wasm"]["status"] == "ok" and figures["wasm"]["ms"] > 0, figures["wasm"]
    assert "wasm cannot train this model" not in page.inner_text("#backend-info")
    missing = page.evaluate("""async () => {
        const { wasmMissingKernels } = await import('/static/disco/backends.js');
        const model = tf.sequential({ layers: [tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 2, kernelSize: 3 }),
            tf.layers.maxPooling2d({ poolSize: 2 }), tf.layers.flatten(), tf.layers.dense({ units: 2 })] });
        return wasmMissingKernels(model);
    }""")
    assert missing == []
