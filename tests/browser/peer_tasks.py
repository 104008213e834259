"""Tiny decentralized tasks for the peer-to-peer browser tests (tests/browser/test_decentralized_training.py).

The 4-column tabular MLP of ``tiny_tasks.TinyTabular`` (97 weights) as decentralized tasks:
three rounds of one epoch each, so a test of three pages stays short. Loaded into the browser
tests' platform through ``DISCO_TASK_PROVIDERS`` (see conftest.py).
"""

from __future__ import annotations

from typing import Any

from tasks.choices import Aggregator, Scheme
from tasks.spec import TaskSpec
from tests.browser.tiny_tasks import TinyTabular


def _peer_task(base: TaskSpec, **fields: Any) -> TaskSpec:
    return TaskSpec(**{
        **base.as_fields(), "scheme": Scheme.DECENTRALIZED, "epochs": 3, "round_duration": 1,
        "preprocessing": ["sanitize"], "round_deadline_seconds": 30, **fields,
    })


class TinyPeersMean(TinyTabular):
    """Three peers, sample-weighted mean."""

    def get_task(self) -> TaskSpec:
        return _peer_task(super().get_task(), id="tiny_peers_mean", title="Tiny peers (mean)",
                          summary_preview="Three browsers average their 4-column classifiers, for tests.",
                          aggregator=Aggregator.MEAN, min_participants=3)


class TinyPeersSecure(TinyTabular):
    """Three peers, secure aggregation (additive shares modulo 2**32)."""

    def get_task(self) -> TaskSpec:
        return _peer_task(super().get_task(), id="tiny_peers_secure", title="Tiny peers (secure)",
                          summary_preview="Three browsers securely aggregate their classifiers, for tests.",
                          aggregator=Aggregator.SECURE, min_participants=3, max_share_value=10.0)


class TinyPeersPrivate(TinyTabular):
    """Two peers or more, relaying allowed, differential privacy (clipping 1, noise scale 0.05)."""

    def get_task(self) -> TaskSpec:
        return _peer_task(super().get_task(), id="tiny_peers_private", title="Tiny peers (private)",
                          summary_preview="Peers with differential privacy and the relay allowed, for tests.",
                          aggregator=Aggregator.MEAN, min_participants=2, allow_relay=True, clipping_radius=1.0,
                          noise_scale=0.05)


class TinyPeersDrop(TinyTabular):
    """Two peers or more with a short deadline: the drop-out test closes one page mid-training."""

    def get_task(self) -> TaskSpec:
        return _peer_task(super().get_task(), id="tiny_peers_drop", title="Tiny peers (drop-out)",
                          summary_preview="Peers that go on without one that leaves, for tests.",
                          aggregator=Aggregator.MEAN, min_participants=2, round_deadline_seconds=8)


class TinyPeersSecureRelay(TinyTabular):
    """Three peers, secure aggregation, pages forced onto the relay (?relay=force): what the server carries."""

    def get_task(self) -> TaskSpec:
        return _peer_task(super().get_task(), id="tiny_peers_secure_relay", title="Tiny peers (secure, relayed)",
                          summary_preview="Three browsers securely aggregate through the relay, for tests.",
                          aggregator=Aggregator.SECURE, min_participants=3, max_share_value=10.0, allow_relay=True)
