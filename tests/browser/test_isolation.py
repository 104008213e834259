"""The training page is cross-origin isolated, so TF.js's wasm backend can run several threads.

The other pages are not isolated and keep working; no page logs a CSP violation or a console error.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.browser.train_helpers import open_train_page

pytestmark = pytest.mark.browser


def watch_console(page: Any) -> list[str]:
    """Collect the page's console errors and CSP violations (as messages) from now on."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_train_page_is_isolated_and_wasm_threads_start(live_platform, page):
    """Isolated, the worker's wasm backend can run several threads (forced here: ``?wasm_threads=2``); unforced,
    a model as small as tiny_tabular's gets one (backends.js, wasmThreadsChoice), and the page says why."""
    errors = watch_console(page)
    response = page.goto(f"{live_platform['url']}/tasks/tiny_tabular/train/")
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    assert response.headers["cross-origin-embedder-policy"] == "require-corp"
    open_train_page(page, live_platform["url"], "tiny_tabular")

    assert page.evaluate("crossOriginIsolated") is True
    assert page.evaluate("window.discoTrain.engine") == "worker"
    # The probe may find cpu as fast as one wasm thread on a model this small (a CI run chose cpu): the threads
    # are wasm's, so wasm is chosen here.
    page.select_option("#backend-select", "wasm")
    page.wait_for_function("() => window.discoTrain.backend === 'wasm'")
    (trainer,) = [w for w in page.workers if w.url.endswith("/static/disco/train_worker.js")]
    assert trainer.evaluate("crossOriginIsolated") is True
    assert trainer.evaluate("tf.wasm.getThreadsCount()") == 1
    assert page.evaluate("window.discoTrain.threads") == 1
    assert "1 thread: this model is small" in page.inner_text("#backend-info")

    # A page of its own, so that its worker is the only one listed (a navigated page's list may still hold the
    # previous document's worker for a while, in no stated order).
    forced = page.context.new_page()
    errors += watch_console(forced)
    open_train_page(forced, live_platform["url"], "tiny_tabular", "?wasm_threads=2")
    forced.select_option("#backend-select", "wasm")
    forced.wait_for_function("() => window.discoTrain.backend === 'wasm'")
    assert forced.evaluate("navigator.hardwareConcurrency") == os.cpu_count()
    (trainer,) = [w for w in forced.workers if w.url.endswith("/static/disco/train_worker.js")]
    assert trainer.evaluate("tf.wasm.getThreadsCount()") == 2
    assert forced.evaluate("window.discoTrain.threads") == 2
    assert "2 threads, as the address asks" in forced.inner_text("#backend-info")
    assert not errors, errors


def test_static_files_are_same_origin_resources(live_platform, page):
    wasm = "/static/vendor/tfjs-backend-wasm/tfjs-backend-wasm-threaded-simd.wasm"
    response = page.request.get(f"{live_platform['url']}{wasm}")
    assert response.ok
    assert response.headers["cross-origin-resource-policy"] == "same-origin"
    assert response.headers["content-type"] == "application/wasm"


def test_other_pages_are_not_isolated_and_keep_working(live_platform, page):
    errors = watch_console(page)
    for path, text in (("/tasks/", "Tiny tabular"), ("/tasks/tiny_shapes/", "Tiny shapes")):
        response = page.goto(f"{live_platform['url']}{path}")
        assert response.ok
        assert "cross-origin-embedder-policy" not in response.headers
        assert page.evaluate("crossOriginIsolated") is False
        assert text in page.inner_text("main")
    # A blob: image still loads on a page that is not isolated (previews, downloads use blob: URLs).
    loaded = page.evaluate("""() => new Promise((resolve) => {
        const canvas = document.createElement('canvas'); canvas.width = 3; canvas.height = 2;
        canvas.toBlob((blob) => { const img = new Image(); img.onload = () => resolve(img.naturalWidth);
          img.onerror = () => resolve(-1); img.src = URL.createObjectURL(blob); });
    })""")
    assert loaded == 3
    assert not errors, errors


def test_blob_images_load_on_the_isolated_train_page(live_platform, page):
    open_train_page(page, live_platform["url"], "tiny_shapes")
    loaded = page.evaluate("""() => new Promise((resolve) => {
        const canvas = document.createElement('canvas'); canvas.width = 5; canvas.height = 4;
        canvas.toBlob((blob) => { const img = new Image(); img.onload = () => resolve(img.naturalWidth);
          img.onerror = () => resolve(-1); img.src = URL.createObjectURL(blob); document.body.append(img); });
    })""")
    assert loaded == 5
