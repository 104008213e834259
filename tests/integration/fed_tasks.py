"""Tiny federated tasks for the multi-process integration tests (loaded through DISCO_TASK_PROVIDERS)."""

from __future__ import annotations

from dataclasses import replace

from disco_client.keras_env import tf_keras
from tasks.spec import TaskSpec

COLUMNS = ["Age", "SibSp", "Parch", "Fare", "Pclass"]


def titanic_mlp(*, hidden: int, seed: int):
    """A compiled 5 -> hidden -> 1 classifier for the Titanic-shaped test tasks."""
    keras = tf_keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Input(shape=(len(COLUMNS),)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


class FedTabular:
    """Titanic-shaped: five numeric columns -> survived, a small MLP, three participants a round."""

    min_participants = 3
    task_id = "fed-tabular"

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id=self.task_id, title="Federated tabular test task", summary_preview="Titanic-shaped data.",
            data_type="tabular", scheme="federated", input_columns=COLUMNS, output_columns=["Survived"],
            preprocessing=["sanitize"], epochs=6, round_duration=1, batch_size=16,
            min_participants=self.min_participants, round_deadline_seconds=5,
        )

    def get_model(self):
        return titanic_mlp(hidden=8, seed=3)


class FedTabularPairs(FedTabular):
    """The same with two participants a round, for straggler and dropout tests."""

    min_participants = 2
    task_id = "fed-pairs"


class FedTabularNumpy(FedTabularPairs):
    """Two participants a round that train with numpy (``disco_client.trainer.DenseTrainer``), no TensorFlow."""

    task_id = "fed-numpy"


class FedTabularPrivate(FedTabularPairs):
    """Two participants with differential privacy: clipping only (noise scale 0), so the bound is exact."""

    task_id = "fed-private"
    clipping_radius = 0.005

    def get_task(self) -> TaskSpec:
        return replace(super().get_task(), clipping_radius=self.clipping_radius, noise_scale=0.0)


class FedTabularInvited(FedTabularPairs):
    """Two participants a round, open only to people with the invitation (participation 'invited')."""

    task_id = "fed-invited"

    def get_task(self) -> TaskSpec:
        return replace(super().get_task(), participation="invited")


class FedTabularExact(FedTabular):
    """Three participants a round, updates sent exactly (float32): the yardstick of the compressed twin."""

    task_id = "fed-exact"


class FedTabularInt8(FedTabular):
    """The same task whose participants send their updates as int8 (a quarter of the bytes)."""

    task_id = "fed-int8"

    def get_task(self) -> TaskSpec:
        return replace(super().get_task(), compression="int8")


class FedTabularSampled(FedTabularPairs):
    """Two participants a round, two invited per round (participantsPerRound) whoever else is connected."""

    task_id = "fed-sampled"

    def get_task(self) -> TaskSpec:
        return replace(super().get_task(), participants_per_round=2)


class FedTabularFour(FedTabular):
    """Four participants a round (the reverse-proxy test spreads them over two daphnes through nginx)."""

    min_participants = 4
    task_id = "fed-four"
