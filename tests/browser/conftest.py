"""A platform set up as `make run` does (migrate, admin, default tasks, daphne) and a headless Chromium.

The platform runs in the mode the environment selects: on its database (PostgreSQL under ``.ci/run``) and,
with ``REDIS_URL``, on Redis with real aggregation and conversion workers; else embedded, as `make run`.
"""

from __future__ import annotations

import pytest

from tests.live_platform import CHROMIUM_ARGS, LivePlatform

TINY_PROVIDERS = ",".join([
    *(f"tests.browser.tiny_tasks.{name}" for name in ("TinyTabular", "TinyShapes", "TinyText", "TinyFederated",
                                                        "TinyFederatedPrivate", "TinyFederatedInvited")),
    *(f"tests.browser.peer_tasks.{name}" for name in ("TinyPeersMean", "TinyPeersSecure", "TinyPeersPrivate",
                                                       "TinyPeersDrop", "TinyPeersSecureRelay")),
])


@pytest.fixture(scope="session")
def live_platform(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("platform")
    # The tiny tasks of the in-browser training tests are loaded too (providers of tests/browser/tiny_tasks.py).
    # Every federated update is announced and sent when the server grants it, one at a time (upload slots,
    # aggregation/upload_slots.py): the pages and Python participants here all go that way.
    platform = LivePlatform.selected(workdir, redis_db=12, DISCO_ADMIN_PASSWORD="browser-test-admin-pw",
                                     DISCO_TASK_PROVIDERS=TINY_PROVIDERS, DISCO_ANNOUNCE_FROM_BYTES="64",
                                     DISCO_UPLOAD_SLOTS="1")
    try:
        platform.manage("migrate", "--noinput")
        platform.manage("ensure_admin")
        platform.start_workers()  # with a broker, load_default_tasks waits for the conversion worker
        loaded = platform.manage("load_default_tasks")
        server = platform.daphne()
        yield {"url": server.url, "load_output": loaded.stdout, "workdir": workdir, "db": platform.db,
               "platform": platform, "daphne_log": server.log}
    finally:
        platform.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()
