"""Tiny decentralized tasks for the multi-process integration tests (loaded through DISCO_TASK_PROVIDERS)."""

from __future__ import annotations

from dataclasses import replace

from tasks.spec import TaskSpec
from tests.integration.fed_tasks import COLUMNS, titanic_mlp


class PeerTabular:
    """Titanic-shaped: five numeric columns -> survived; 1,793 parameters (7 KB updates), three peers a round."""

    task_id = "peer-mean"
    aggregator = "mean"

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id=self.task_id, title=f"Decentralized test task ({self.aggregator})", summary_preview="Titanic-shaped.",
            data_type="tabular", scheme="decentralized", input_columns=COLUMNS, output_columns=["Survived"],
            preprocessing=["sanitize"], epochs=6, round_duration=1, batch_size=16, min_participants=3,
            round_deadline_seconds=8, aggregator=self.aggregator, max_share_value=10.0,
        )

    def get_model(self):
        return titanic_mlp(hidden=256, seed=5)


class PeerSecure(PeerTabular):
    """The same with secure aggregation (additive shares modulo 2**32)."""

    task_id = "peer-secure"
    aggregator = "secure"


class PeerPrivate(PeerTabular):
    """Two peers with differential privacy: clipping only (noise scale 0), so the bound is exact."""

    task_id = "peer-private"
    clipping_radius = 0.005

    def get_task(self) -> TaskSpec:
        return replace(super().get_task(), min_participants=2, clipping_radius=self.clipping_radius, noise_scale=0.0)
