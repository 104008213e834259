"""WebGPU on the training page: probed where the browser gives an adapter, reported unavailable (with the
reason) where it does not, and training works either way.

Headless Chromium has no GPU here; with ``--enable-unsafe-webgpu`` it offers a WebGPU adapter backed by
SwiftShader (a CPU Vulkan implementation), enough to exercise the webgpu backend of TF.js, though far
slower than a real GPU. Without the flag (the session ``browser``), ``navigator.gpu`` exists but
``requestAdapter()`` answers null.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.sample_data import learnable_tabular_csv
from tests.browser.train_helpers import open_train_page, train
from tests.live_platform import CHROMIUM_ARGS

pytestmark = pytest.mark.browser

WEBGPU_ARGS = [*CHROMIUM_ARGS, "--enable-unsafe-webgpu"]
FIGURES = "() => Object.fromEntries(window.discoTrain.probe.figures.map((f) => [f.backend, f]))"


@pytest.fixture(scope="module")
def webgpu_browser(browser):
    """A second Chromium, with WebGPU, from the session browser's Playwright (one sync Playwright at a time)."""
    chromium = browser.browser_type.launch(executable_path="/usr/bin/chromium", args=WEBGPU_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def webgpu_page(webgpu_browser):
    context = webgpu_browser.new_context(viewport={"width": 1280, "height": 900})
    # The page's Content-Security-Policy must let the webgpu backend load and run (no CDN, no eval).
    context.add_init_script("window.cspViolations = []; document.addEventListener('securitypolicyviolation',"
                            " (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")
    page = context.new_page()
    yield page
    assert page.evaluate("window.cspViolations || []") == []
    context.close()


def connect_tabular(page, tmp_path: Path, n: int = 200) -> None:
    (tmp_path / "train.csv").write_text(learnable_tabular_csv(n, seed=3))
    page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / "train.csv")


def open_with_probe_budget(page, base: str, task_id: str, probe_ms: int) -> None:
    page.goto(f"{base}/tasks/{task_id}/train/?probe_ms={probe_ms}")
    page.wait_for_function("() => window.discoTrain && window.discoTrain.state !== 'loading'", timeout=120_000)
    assert page.evaluate("window.discoTrain.state") == "ready", page.evaluate("JSON.stringify(window.discoTrain.error)")


def summary(figures: dict) -> dict:
    return {b: (f["status"], f["warmupMs"] and round(f["warmupMs"]), f["ms"] and round(f["ms"], 1), f.get("reason"))
            for b, f in figures.items()}


def test_with_an_adapter_webgpu_is_offered_measured_and_trains_in_the_worker(live_platform, webgpu_page, tmp_path):
    page = webgpu_page
    # The default probe (about a second): on SwiftShader WebGL's first batch (shader compilation) alone
    # outlasts it, so webgpu, probed after webgl, is usually not reached; it is offered all the same,
    # since an adapter exists.
    open_train_page(page, live_platform["url"], "tiny_tabular")
    assert page.evaluate("window.discoTrain.engine") == "worker"
    figures = page.evaluate(FIGURES)
    print("\nprobe, default budget:", summary(figures))
    assert set(figures) == {"webgpu", "wasm", "webgl", "cpu"}
    assert figures["webgpu"]["status"] in {"ok", "timeout", "skipped"}, figures["webgpu"]
    option = page.locator("#backend-select option[value=webgpu]")
    assert option.is_enabled() and option.get_attribute("hidden") is None

    # Given the time (?probe_ms=), the probe measures webgpu: warm-up (WGSL pipelines compiled) and one batch.
    open_with_probe_budget(page, live_platform["url"], "tiny_tabular", 60_000)
    figures = page.evaluate(FIGURES)
    print("probe, 60 s budget:", summary(figures))
    webgpu = figures["webgpu"]
    assert webgpu["status"] == "ok", webgpu
    assert webgpu["ms"] > 0 and webgpu["warmupMs"] > 0
    assert f"webgpu {webgpu['ms']:.1f} ms" in page.inner_text("#backend-info")
    assert all(f["status"] == "ok" for f in figures.values()), summary(figures)

    page.select_option("#backend-select", "webgpu")
    page.wait_for_function("() => window.discoTrain.backend === 'webgpu'")
    assert "webgpu: chosen by you" in page.inner_text("#backend-info")
    connect_tabular(page, tmp_path)
    started = page.evaluate("performance.now()")
    result = train(page)
    seconds = (page.evaluate("performance.now()") - started) / 1000
    history = result["train"]["history"]
    assert len(history) == 8  # the tiny tabular task's epochs
    assert all(e["loss"] == e["loss"] for e in history)  # no NaN
    assert result["train"]["trainedOn"] == "webgpu"  # tf.getBackend() in the worker at the end of training
    assert result["train"]["engine"] == "worker"
    print(f"webgpu training: 8 epochs in {seconds:.1f} s, last epoch {history[-1]}")


def test_without_an_adapter_webgpu_is_unavailable_with_a_reason_and_training_works(live_platform, page, tmp_path: Path):
    open_train_page(page, live_platform["url"], "tiny_tabular")
    assert page.evaluate("window.discoTrain.engine") == "worker"
    figures = page.evaluate(FIGURES)
    webgpu = figures["webgpu"]  # headless Chromium has navigator.gpu, so the webgpu script registers the backend
    assert webgpu["status"] == "unable" and webgpu["ms"] is None, webgpu
    assert webgpu["reason"] == "no WebGPU adapter here (navigator.gpu.requestAdapter() returned null)"
    assert page.evaluate("window.discoTrain.probe.backend") != "webgpu"
    assert "webgpu no WebGPU adapter here" in page.inner_text("#backend-info")
    option = page.locator("#backend-select option[value=webgpu]")
    assert option.is_disabled() and option.get_attribute("hidden") is not None

    connect_tabular(page, tmp_path)
    result = train(page)
    assert len(result["train"]["history"]) == 8
    assert result["train"]["trainedOn"] == result["train"]["backend"] != "webgpu"


def test_in_the_page_too_webgpu_is_measured_and_trains(live_platform, webgpu_page, tmp_path):
    """Without the worker (?worker=off) the page itself probes and trains: the webgpu script is loaded there
    too, and TF.js does not start webgpu on its own before the probe (backends.js keepWebgpuExplicit)."""
    page = webgpu_page
    page.goto(f"{live_platform['url']}/tasks/tiny_tabular/train/?worker=off&probe_ms=60000")
    page.wait_for_function("() => window.discoTrain && window.discoTrain.state !== 'loading'", timeout=120_000)
    assert page.evaluate("window.discoTrain.state") == "ready", page.evaluate("JSON.stringify(window.discoTrain.error)")
    assert page.evaluate("window.discoTrain.engine") == "page"
    figures = page.evaluate(FIGURES)
    print("\nprobe in the page, 60 s budget:", summary(figures))
    assert figures["webgpu"]["status"] == "ok" and figures["webgpu"]["ms"] > 0, figures["webgpu"]
    page.select_option("#backend-select", "webgpu")
    page.wait_for_function("() => window.discoTrain.backend === 'webgpu'")
    connect_tabular(page, tmp_path)
    result = train(page)
    assert len(result["train"]["history"]) == 8
    assert result["train"]["trainedOn"] == "webgpu"
