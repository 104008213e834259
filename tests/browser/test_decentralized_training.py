"""Peers train decentralized tasks together in real Chromium pages (three browser contexts).

WebRTC data channels between pages of one headless Chromium connect with no ICE servers
(host candidates as mDNS names); the relay test forces the server path with ``?relay=force``.
Each page exposes ``window.discoPeers.rounds``: per round the peers, the transport, any
fallback, the update it sent and the weights it ended with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from disco_client.relay import decode_relay_frame
from disco_client.secure import fixed_point_scale, quantization_bound
from tasks.sample_data import learnable_tabular_csv
from tests.browser.train_helpers import DONE
from tests.live_platform import Database

pytestmark = pytest.mark.browser


def write_parts(folder: Path, rows: list[int], seed: int = 11) -> list[Path]:
    """One CSV file of distinct learnable rows per peer, ``rows[i]`` rows for peer i."""
    lines = learnable_tabular_csv(sum(rows), seed=seed).strip().splitlines()
    header, body = lines[0], lines[1:]
    paths, start = [], 0
    for i, n in enumerate(rows):
        path = folder / f"peer{i}.csv"
        path.write_text("\n".join([header, *body[start:start + n]]) + "\n")
        paths.append(path)
        start += n
    return paths


def open_peer(browser: Any, url: str, data: Path, init_script: str | None = None) -> tuple[Any, Any]:
    """A new browser context on the training page ``url`` with ``data`` connected."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => window.discoTrain && window.discoTrain.state !== 'loading'", timeout=60_000)
    assert page.evaluate("window.discoTrain.state") == "ready", page.evaluate("JSON.stringify(window.discoTrain.error)")
    assert page.is_checked("#peers-toggle")
    page.set_input_files("#train-connector input[data-slot=csv]", data)
    page.wait_for_function("() => !document.getElementById('start-btn').disabled", timeout=30_000)
    return context, page


def finish(pages: list[Any]) -> list[dict[str, Any]]:
    """Wait for every page's training to end; returns each page's window.discoPeers and final weights."""
    results = []
    for page in pages:
        page.wait_for_function(DONE, timeout=180_000)
        state = page.evaluate("window.discoTrain.state")
        assert state == "done", (state, page.evaluate("JSON.stringify(window.discoTrain.error)"),
                                 page.inner_text("#train-log"))
        peers = page.evaluate("({participantId: window.discoPeers.participantId, rounds: window.discoPeers.rounds,"
                              " privacy: window.discoPeers.privacy, evaluations: window.discoPeers.evaluations})")
        peers["final"] = np.concatenate([np.asarray(w["values"], np.float32)
                                         for w in page.evaluate("window.discoTrain.weights()")])
        peers["status"] = page.inner_text("#peers-status")
        if page.locator("#privacy-status").count():
            peers["privacy_status"] = page.inner_text("#privacy-status")
        results.append(peers)
    return results


def train_together(browser: Any, base: str, task: str, files: list[Path], query: str = "",
                   init_script: str | None = None) -> list[dict[str, Any]]:
    contexts, pages = [], []
    try:
        for data in files:
            context, page = open_peer(browser, f"{base}/tasks/{task}/train/{query}", data, init_script)
            contexts.append(context)
            pages.append(page)
        for page in pages:
            page.click("#start-btn")
        results = finish(pages)
        if init_script:
            for result, page in zip(results, pages, strict=True):
                result["sent_frames"] = page.evaluate("window.discoSentFrames")
        return results
    finally:
        for context in contexts:
            context.close()


def sent_by(results: list[dict[str, Any]], index: int) -> dict[str, tuple[int, np.ndarray]]:
    """Round ``index``'s update of each page, by participant id: (samples, vector)."""
    return {r["participantId"]: (r["rounds"][index]["samples"], np.asarray(r["rounds"][index]["sent"], np.float32))
            for r in results}


def weighted_mean(updates: dict[str, tuple[int, np.ndarray]], peers: list[str]) -> np.ndarray:
    total = sum(updates[p][0] for p in peers)
    acc = np.zeros_like(updates[peers[0]][1], dtype=np.float64)
    for p in peers:
        acc += updates[p][0] * updates[p][1].astype(np.float64)
    return (acc / total).astype(np.float32)


def peer_rounds(db: Database, task: str) -> list[tuple[int, str]]:
    """The platform's bookkeeping of the task's peer rounds (number, status): no weights in there."""
    return db.query("SELECT number, status FROM aggregation_peerround WHERE task_id = %s ORDER BY number", (task,))


def assert_same_round_results(results: list[dict[str, Any]], rounds: int = 3) -> None:
    for r in results:
        assert [x["round"] for x in r["rounds"]] == [x["round"] for x in results[0]["rounds"]]
        assert len(r["rounds"]) == rounds
        np.testing.assert_array_equal(r["final"], np.asarray(r["rounds"][-1]["weights"], np.float32))
    for index in range(rounds):
        first = np.asarray(results[0]["rounds"][index]["weights"], np.float32)
        for r in results[1:]:  # every peer computes bit-identical weights
            np.testing.assert_array_equal(np.asarray(r["rounds"][index]["weights"], np.float32), first)


def test_three_pages_average_over_webrtc_for_three_rounds(live_platform, browser, tmp_path: Path):
    task = "tiny_peers_mean"
    results = train_together(browser, live_platform["url"], task, write_parts(tmp_path, [40, 60, 80]))
    assert_same_round_results(results)
    ids = sorted(r["participantId"] for r in results)
    for index in range(3):
        for r in results:
            info = r["rounds"][index]
            assert info["peers"] == ids and info["used"] == "webrtc" and info["fellBack"] is None, info
        expected = weighted_mean(sent_by(results, index), ids)
        np.testing.assert_allclose(np.asarray(results[0]["rounds"][index]["weights"]), expected, rtol=0, atol=1e-6)
    assert "over direct WebRTC connections" in results[0]["status"]
    db_rounds = peer_rounds(live_platform["db"], task)
    assert [status for _, status in db_rounds[:3]] == ["closed"] * 3
    # Federated evaluation: every page scored each round's aggregate on its validation split and reported it.
    numbers = [x["round"] for x in results[0]["rounds"]]
    for r in results:
        assert [(e["round"], e["recorded"]) for e in r["evaluations"]] == [(n, True) for n in numbers]
    assert sorted(r["evaluations"][0]["samples"] for r in results) == [8, 12, 16]  # validationSplit 0.2
    stored = live_platform["db"].query("SELECT number, val_samples FROM aggregation_peerround WHERE task_id = %s "
                                       "AND val_samples IS NOT NULL ORDER BY number", (task,))
    assert stored == [(n, 36) for n in numbers]


def test_three_pages_aggregate_securely_within_the_quantization_bound(live_platform, browser, tmp_path: Path):
    task = "tiny_peers_secure"
    results = train_together(browser, live_platform["url"], task, write_parts(tmp_path, [60, 60, 60], seed=12))
    assert_same_round_results(results)
    bound = quantization_bound(fixed_point_scale(10.0, 3))
    ids = sorted(r["participantId"] for r in results)
    for index in range(3):
        updates = sent_by(results, index)
        plain = np.mean(np.stack([updates[p][1].astype(np.float64) for p in ids]), axis=0)
        got = np.asarray(results[0]["rounds"][index]["weights"], np.float64)
        assert results[0]["rounds"][index]["fellBack"] is None, results[0]["rounds"][index]
        assert results[0]["rounds"][index]["peers"] == ids
        # Fixed-point quantization, plus the float32 rounding of the result.
        assert np.max(np.abs(got - plain)) <= bound + np.max(np.abs(plain)) * 2 ** -23
        # Secret sharing hides each update: no single update is the result.
        assert not any(np.array_equal(updates[p][1], got.astype(np.float32)) for p in ids)


def test_forced_relay_with_privacy_converges_and_shows_the_privacy_spent(live_platform, browser, tmp_path: Path):
    task = "tiny_peers_private"
    files = write_parts(tmp_path, [50, 70], seed=13)
    results = train_together(browser, live_platform["url"], task, files, "?relay=force")
    assert_same_round_results(results)
    ids = sorted(r["participantId"] for r in results)
    for index in range(3):
        assert all(r["rounds"][index]["used"] == "relay" for r in results)
        expected = weighted_mean(sent_by(results, index), ids)
        np.testing.assert_allclose(np.asarray(results[0]["rounds"][index]["weights"]), expected, rtol=0, atol=1e-6)
    spent = results[0]["privacy"]
    assert [p["rounds"] for p in spent] == [1, 2, 3]
    assert spent[0]["epsilon"] < spent[1]["epsilon"] < spent[2]["epsilon"]
    assert spent[2]["clippingRadius"] == 1.0 and spent[2]["noiseScale"] == 0.05
    assert "(ε, δ) spent after 3 rounds" in results[0]["privacy_status"], results[0]["privacy_status"]
    assert "over the server relay" in results[0]["status"]


def test_a_peer_that_closes_its_page_is_left_out_and_the_others_finish(live_platform, browser, tmp_path: Path):
    task = "tiny_peers_drop"
    files = write_parts(tmp_path, [60, 60, 60], seed=14)
    contexts, pages = [], []
    try:
        for data in files:
            context, page = open_peer(browser, f"{live_platform['url']}/tasks/{task}/train/", data)
            contexts.append(context)
            pages.append(page)
        for page in pages:
            page.click("#start-btn")
        leaving = pages[2]
        leaving.wait_for_function("() => window.discoPeers.rounds.length >= 1", timeout=120_000)
        left_id = leaving.evaluate("window.discoPeers.participantId")
        contexts[2].close()  # mid-training: the page goes away with its WebSocket and data channels
        results = finish(pages[:2])  # within finish's time limit: the others do not wait for it forever
    finally:
        for context in contexts:
            context.close()
    assert_same_round_results(results)
    last = results[0]["rounds"][-1]
    assert left_id not in last["peers"] and len(last["peers"]) == 2, last
    assert all(left_id not in r["rounds"][-1]["peers"] for r in results)


# Records what a page sends the server: binary frames as byte lists, text frames as strings.
RECORD_SENT_FRAMES = """
(() => {
  const Native = window.WebSocket;
  window.discoSentFrames = [];
  window.WebSocket = class extends Native {
    send(data) {
      if (typeof data === 'string') window.discoSentFrames.push(data);
      else {
        const u8 = data instanceof Uint8Array ? data : new Uint8Array(data);
        window.discoSentFrames.push(Array.from(u8));
      }
      super.send(data);
    }
  };
})();
"""


def test_secure_aggregation_forced_onto_the_relay_sends_the_server_only_ciphertext(live_platform, browser,
                                                                                    tmp_path: Path):
    task = "tiny_peers_secure_relay"
    results = train_together(browser, live_platform["url"], task, write_parts(tmp_path, [50, 60, 70], seed=15),
                             "?relay=force", init_script=RECORD_SENT_FRAMES)
    assert_same_round_results(results)
    bound = quantization_bound(fixed_point_scale(10.0, 3))
    ids = sorted(r["participantId"] for r in results)
    for index in range(3):
        updates = sent_by(results, index)
        plain = np.mean(np.stack([np.clip(updates[p][1].astype(np.float64), -10, 10) for p in ids]), axis=0)
        got = np.asarray(results[0]["rounds"][index]["weights"], np.float64)
        assert all(r["rounds"][index]["used"] == "relay" and r["rounds"][index]["fellBack"] is None for r in results)
        assert np.max(np.abs(got - plain)) <= bound + np.max(np.abs(plain)) * 2 ** -23
    for r in results:
        text = [json.loads(f) for f in r["sent_frames"] if isinstance(f, str)]
        assert all(m.get("publicKey") for m in text if m["type"] == "ready")  # a public key with every ready
        relayed = [decode_relay_frame(bytes(f)) for f in r["sent_frames"] if not isinstance(f, str)]
        assert len(relayed) >= 3 * 2 * 2  # three rounds, two other peers, a share and a partial sum each
        assert {envelope["kind"] for envelope, _ in relayed} == {"share", "partial"}
        for envelope, payload in relayed:
            body = bytes(payload)
            assert envelope["part"] > 0 or body[0] == 1  # each payload starts as a sealed one (version 1)
            assert b"uint32" not in body and b'"type"' not in body  # no plaintext share frame
        updates = [np.asarray(x["sent"], np.float32).tobytes()[:16] for x in r["rounds"]]
        assert not any(u in bytes(p) for u in updates for _, p in relayed)
