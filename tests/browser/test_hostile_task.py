"""A task whose every text field, name and link is hostile runs no script anywhere, and the CSP breaks nothing.

The hostile rows are written past validation and sanitizing on save (``hostile_tasks.plant``), so what is
tested is the last line of defence: rendering (escaping, the sanitizer on render, links checked again)
and the Content-Security-Policy. Every page records dialogs, CSP violations and a ``window.__pwned``
marker that the payloads set. The same pages prove the policy leaves TF.js (wasm, WebGL, CPU), Chart.js,
Papa Parse, the admin's scripts and the same-origin WebSockets working.

Set ``DISCO_SHOTS=/some/dir`` to keep the screenshots (hostile and normal task pages).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from tasks.sample_data import learnable_tabular_csv, png_bytes, shapes
from tests.browser import hostile_tasks as hostile
from tests.browser.train_helpers import open_train_page, train
from tests.live_platform import LivePlatform

pytestmark = pytest.mark.browser

ADMIN_PASSWORD = "hostile-test-admin-pw"
TINY = ",".join(f"tests.browser.tiny_tasks.{name}" for name in ("TinyTabular", "TinyShapes", "TinyFederated"))
PEERS = "tests.browser.peer_tasks.TinyPeersMean"

# Runs before any page script (Playwright injects it outside the page's CSP).
WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample,
                               source: e.sourceFile, line: e.lineNumber, column: e.columnNumber});
});
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A platform with only the tiny tasks, plus the hostile and normal tasks copied from them."""
    live = LivePlatform.selected(tmp_path_factory.mktemp("hostile"), redis_db=11, DISCO_ADMIN_PASSWORD=ADMIN_PASSWORD,
                                 DISCO_TASK_PROVIDERS=f"{TINY},{PEERS}")
    try:
        live.manage("migrate", "--noinput")
        live.manage("ensure_admin")
        live.start_workers()  # with a broker, load_default_tasks waits for the conversion worker
        live.manage("load_default_tasks", "--only", "tiny_tabular", "tiny_shapes", "tiny_federated",
                    "tiny_peers_mean")
        live.manage("shell", "-c", "from tests.browser.hostile_tasks import plant; plant()")
        yield live.daphne().url
    finally:
        live.stop()


@pytest.fixture
def watched(browser):
    """A page that records dialogs (and dismisses them), console errors and CSP violations."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(WATCH)
    page = context.new_page()
    page.dialogs = []
    page.console_errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()


def assert_nothing_ran(page) -> None:
    # Every image has loaded or failed: an onerror/onload handler that slipped through has had its turn.
    page.wait_for_function("() => document.readyState === 'complete' && [...document.images].every((i) => i.complete)",
                           timeout=30_000)
    assert page.dialogs == []
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("window.__cspViolations") == [], page.evaluate("window.__cspViolations")
    assert not [m for m in page.console_errors if "Content Security Policy" in m], page.console_errors


def shoot(page, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in_as_admin(page, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def test_the_task_page_shows_hostile_text_as_text(platform, watched, tmp_path):
    page = watched
    response = page.goto(f"{platform}/tasks/hostile_tabular/")
    assert "script-src 'self' 'wasm-unsafe-eval'" in response.headers["content-security-policy"]

    assert page.inner_text("h1") == hostile.TITLE  # escaped, shown literally
    assert page.title().startswith(hostile.TITLE)
    assert page.inner_text("header.task-head p.lead") == hostile.PREVIEW
    main = page.inner_text("main")
    for text in (hostile.DATA_FORMAT, hostile.EXAMPLE_TEXT, hostile.INSTRUCTIONS, *hostile.COLUMNS, hostile.OUTPUT,
                 hostile.EXAMPLE[0]["columnName"], hostile.EXAMPLE[0]["columnData"]):
        assert text in main, text
    # Allowed formatting survives; everything active is gone from the DOM.
    overview = page.locator(".prose").first
    assert overview.locator("strong").inner_text() == "bold" and overview.locator("li").count() == 2
    web_link = overview.locator("a", has_text="web link")
    assert web_link.get_attribute("href") == "https://example.org/"
    assert web_link.get_attribute("rel") == "noopener noreferrer nofollow"
    for selector in ("main script", "main img", "main svg", "main iframe", "main form", "main style",
                     "main details", "main [onclick]", "main [style]", "base"):
        assert page.locator(selector).count() == 0, selector
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map((a) => a.getAttribute('href'))")
    assert not [h for h in hrefs if not h.startswith(("/", "https://", "http://", "#"))], hrefs
    # The stored javascript: sample-dataset link is not rendered; the sanitized links do nothing when clicked.
    assert page.locator("#sample-dataset-link").count() == 0
    for text in ("click me", "data link", "spaced link"):
        page.get_by_text(text, exact=True).click()
    page.locator("h2", has_text="Overview").click()
    assert page.url == f"{platform}/tasks/hostile_tabular/"
    assert page.inner_text("body")  # the covering paragraph did not hide the page (no style attribute)
    assert_nothing_ran(page)
    shoot(page, Path(os.environ.get("DISCO_SHOTS") or tmp_path), "hostile-task-page")


def test_a_normal_task_page_keeps_its_formatting(platform, watched, tmp_path):
    page = watched
    page.goto(f"{platform}/tasks/normal_task/")

    prose = page.locator(".prose")
    assert prose.first.locator("h3").inner_text() == "What you need"
    assert prose.first.locator("code").count() == 2 and prose.first.locator("blockquote").count() == 1
    assert prose.nth(1).locator("ol li").count() == 2 and prose.nth(1).locator("pre code").count() == 1
    link = page.locator("#sample-dataset-link")
    assert link.get_attribute("href") == "https://example.org/heart.csv"
    assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    # Pico's styles apply (a stylesheet blocked by the CSP would leave the default serif font).
    font = page.eval_on_selector("body", "b => getComputedStyle(b).fontFamily").lower()
    assert font.strip() != "serif" and "times" not in font, font
    assert_nothing_ran(page)
    shoot(page, Path(os.environ.get("DISCO_SHOTS") or tmp_path), "normal-task-page")


def test_the_task_list_and_its_filters(platform, watched):
    page = watched
    page.goto(f"{platform}/tasks/")

    card = page.locator("article.task-card", has_text="Hostile")
    assert card.count() == 2 and hostile.PREVIEW in card.first.inner_text()
    # The filter script moved from an inline <script> to a module: changing a select still submits.
    with page.expect_navigation():
        page.select_option("select[name=data_type]", "image")
    assert "data_type=image" in page.url and page.locator("article.task-card").count() == 2
    assert_nothing_ran(page)


def _hostile_csv(n: int, seed: int) -> str:
    """The learnable CSV with the hostile column names in its header (quoted as CSV requires)."""
    rows = list(csv.reader(io.StringIO(learnable_tabular_csv(n, seed=seed))))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*hostile.COLUMNS, hostile.OUTPUT])
    writer.writerows(rows[1:])
    return out.getvalue()


def test_training_page_of_a_hostile_tabular_task_trains_on_wasm_and_cpu(platform, watched, tmp_path):
    page = watched
    (tmp_path / "train.csv").write_text(_hostile_csv(200, seed=0))
    open_train_page(page, platform, "hostile_tabular")
    assert page.inner_text("h1") == f"Train “{hostile.TITLE}” on your data"
    assert page.evaluate("window.discoTrain.backend") == "wasm"  # WebAssembly compiles under 'wasm-unsafe-eval'

    page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / "train.csv")
    page.wait_for_function("() => !document.getElementById('start-btn').disabled")
    header = page.locator("#data-preview table thead th").all_inner_texts()
    assert [h.strip() for h in header][:4] == hostile.COLUMNS  # names shown as text
    result = train(page)
    assert len(result["series"]["loss"]) == 8
    assert page.evaluate("Chart.getChart(document.getElementById('loss-chart')) !== undefined")

    page.select_option("#backend-select", "cpu")
    page.wait_for_function("() => window.discoTrain.backend === 'cpu'")
    train(page)
    assert_nothing_ran(page)


def test_training_page_of_a_hostile_image_task_trains_on_webgl(platform, watched, tmp_path):
    page = watched
    open_train_page(page, platform, "hostile_shapes")
    # The probe may pick wasm for a CNN now (its gradient kernels); choose WebGL: the policy must leave it working.
    page.select_option("#backend-select", "webgl")
    page.wait_for_function("() => window.discoTrain.backend === 'webgl'")
    main = page.inner_text("#train-connector")
    for label in hostile.LABELS:
        assert label in main, label
    # One group per (hostile) label: circles in the first, squares in the second.
    groups = page.locator("#train-connector input[type=file]")
    names = {"circle": 0, "square": 1}
    files: dict[int, list[Path]] = {0: [], 1: []}
    for i, (image, label) in enumerate(shapes(40, size=16, seed=1)):
        path = tmp_path / f"{label}-{i}.png"
        path.write_bytes(png_bytes(image))
        files[names[label]].append(path)
    for index, paths in files.items():
        groups.nth(index).set_input_files(paths)
    page.wait_for_function("() => !document.getElementById('start-btn').disabled")
    train(page)
    assert_nothing_ran(page)


@pytest.mark.parametrize(("task_id", "kind"), [("tiny_federated", "federated"), ("tiny_peers_mean", "decentralized")])
def test_same_origin_websockets_pass_the_policy(platform, watched, task_id, kind):
    """connect-src 'self' covers ws:// on the page's own host (CSP Level 3) in Chromium."""
    page = watched
    page.goto(f"{platform}/tasks/{task_id}/train/")

    first = page.evaluate("""(kind) => new Promise((resolve) => {
        const ws = new WebSocket(`ws://${location.host}/ws/${kind}/${location.pathname.split('/')[2]}/`);
        ws.onopen = () => ws.send(JSON.stringify({type: 'join'}));
        ws.onmessage = (event) => { resolve(JSON.parse(event.data).type); ws.close(); };
        ws.onerror = () => resolve('error');
        setTimeout(() => resolve('timeout'), 15000);
    })""", kind)

    assert first == "welcome"
    assert_nothing_ran(page)


def test_admin_pages_show_hostile_text_as_text_and_their_scripts_work(platform, watched):
    page = watched
    log_in_as_admin(page, platform)
    page.goto(f"{platform}/admin/tasks/task/hostile_tabular/change/")

    assert page.input_value("#id_title") == hostile.TITLE
    assert page.input_value("#id_sample_dataset_link") == hostile.LINK
    assert hostile.TITLE in page.inner_text("#content h2, #content h1, .breadcrumbs")
    assert page.locator("#content script:not([src])").count() == 0
    assert_nothing_ran(page)

    # The admin's own scripts still run under the policy: "select all" in the changelist ticks every row.
    page.goto(f"{platform}/admin/tasks/task/")
    page.check("#action-toggle")
    assert page.locator("input.action-select:checked").count() == page.locator("input.action-select").count() > 0
    assert "selected" in page.inner_text(".action-counter")
    assert_nothing_ran(page)
