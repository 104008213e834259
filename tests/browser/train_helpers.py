"""Helpers of the training-page browser tests: write generated data sets, drive the page, check downloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.sample_data import png_bytes, shapes

# Predicates are arrow functions, never bare expressions: Playwright evaluates a polled expression with
# eval(), which the site's Content-Security-Policy refuses.
DONE = "() => ['done', 'stopped', 'error'].includes(window.discoTrain.state)"


def write_shapes(folder: Path, n: int, seed: int) -> dict[str, list[Path]]:
    """``n`` 16x16 circle / square PNGs under ``folder``, grouped by label."""
    folder.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[Path]] = {}
    for i, (image, label) in enumerate(shapes(n, size=16, seed=seed)):
        path = folder / f"{label}-{i:03d}.png"
        path.write_bytes(png_bytes(image))
        groups.setdefault(label, []).append(path)
    return groups


def open_train_page(page: Any, base: str, task_id: str, query: str = "") -> None:
    """Open the task's training page (``query``: e.g. ``?wasm_threads=2``) and wait for its model to be loaded."""
    page.goto(f"{base}/tasks/{task_id}/train/{query}")
    page.wait_for_function("() => window.discoTrain && window.discoTrain.state !== 'loading'", timeout=60_000)
    assert page.evaluate("window.discoTrain.state") == "ready", page.evaluate("JSON.stringify(window.discoTrain.error)")


def train(page: Any, timeout_s: float = 180) -> dict[str, Any]:
    """Press Start, wait for the end of training; returns window.discoTrain and the chart series."""
    page.wait_for_function("() => !document.getElementById('start-btn').disabled", timeout=30_000)
    page.click("#start-btn")
    page.wait_for_function(DONE, timeout=timeout_s * 1000)
    result = page.evaluate("({train: window.discoTrain, series: window.discoCharts.series})")
    assert result["train"]["state"] == "done", result["train"]["error"]
    return result


def save_reload_download(page: Any, tmp_path: Path, name: str) -> dict[str, Any]:
    """Save the trained model, reload the page, find it in the library, download it and load the files in TF.js.

    Returns what TF.js says about the downloaded model (its input shapes and parameter count).
    """
    page.fill("#save-name", name)
    page.click("#save-btn")
    page.wait_for_function("() => window.discoTrain.savedKey !== null", timeout=30_000)
    page.reload()
    page.wait_for_function("() => window.discoTrain && window.discoTrain.library.length > 0", timeout=30_000)
    row = page.locator("#library-table tbody tr", has_text=name)
    assert row.count() == 1
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    row.locator("button[data-action=download]").click()
    page.wait_for_function("() => document.getElementById('library-status').dataset.kind === 'ok'", timeout=30_000)
    page.wait_for_timeout(500)
    saved = {}
    for download in downloads:
        target = tmp_path / "download" / download.suggested_filename
        target.parent.mkdir(exist_ok=True)
        download.save_as(target)
        saved[download.suggested_filename] = target
    assert {Path(n).suffix for n in saved} == {".json", ".bin"}, list(saved)
    model_json = next(p for n, p in saved.items() if n.endswith(".json"))
    manifest = json.loads(model_json.read_text())
    assert Path(manifest["weightsManifest"][0]["paths"][0]).name in saved  # "./<name>.weights.bin"
    assert manifest["userDefinedMetadata"]["disco"]["name"] == name

    def serve(route: Any) -> None:
        file = saved[route.request.url.rsplit("/", 1)[-1]]
        route.fulfill(body=file.read_bytes(), content_type="application/octet-stream")

    page.route("**/downloaded-model/*", serve)
    return page.evaluate(
        """async (name) => {
            const m = await tf.loadLayersModel('/downloaded-model/' + name);
            const out = {params: m.countParams(), inputs: m.inputs.map((t) => t.shape)};
            m.dispose();
            return out;
        }""",
        model_json.name,
    )
