"""``TaskSpec``: what a task is, independent of the database.

Providers return a ``TaskSpec`` from ``get_task()``; the ``Task`` model stores the same
fields under the same names, and ``tasks.validation`` checks both with one set of
rules. The REST API presents them in DISCO's shape (``displayInformation`` /
``trainingInformation``, see ``tasks.serializers``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .choices import Aggregator, DataType, Participation, Scheme, ServerOptimizer


@dataclass(frozen=True)
class TaskSpec:
    """Every setting of an ML task. Field names match ``tasks.models.Task``."""

    # Identity and display information
    id: str
    title: str
    summary_preview: str
    summary_overview: str = ""
    model_description: str = ""
    data_format: str = ""
    data_example_text: str = ""
    data_example: list[dict[str, Any]] = field(default_factory=list)
    data_example_image: str = ""
    sample_dataset_link: str = ""
    sample_dataset_instructions: str = ""
    # Training information
    data_type: str = DataType.TABULAR
    scheme: str = Scheme.FEDERATED
    epochs: int = 10
    round_duration: int = 2
    batch_size: int = 32
    validation_split: float = 0.2
    min_participants: int = 2
    image_height: int | None = None
    image_width: int | None = None
    image_channels: int | None = None
    labels: list[str] = field(default_factory=list)
    input_columns: list[str] = field(default_factory=list)
    output_columns: list[str] = field(default_factory=list)
    preprocessing: list[str] = field(default_factory=list)
    tokenizer: str = ""
    max_sequence_length: int | None = None
    clipping_radius: float | None = None
    noise_scale: float | None = None
    max_share_value: float = 100.0
    aggregator: str = Aggregator.MEAN
    aggregator_params: dict[str, Any] = field(default_factory=dict)
    server_optimizer: str = ServerOptimizer.NONE
    server_optimizer_params: dict[str, Any] = field(default_factory=dict)
    round_deadline_seconds: int = 120
    allow_relay: bool = True
    # Participation and the bounds on what one participant can do to a round
    participation: str = Participation.OPEN
    max_samples_per_update: int = 100_000
    max_contribution_share: float = 0.25
    max_update_norm: float | None = None
    compression: str = "float32"
    participants_per_round: int | None = None

    def as_fields(self) -> dict[str, Any]:
        """The spec as keyword arguments for ``Task``."""
        return asdict(self)


SPEC_FIELDS: tuple[str, ...] = tuple(TaskSpec.__dataclass_fields__)
