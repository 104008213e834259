"""Tiny tasks (scheme "local") for the in-browser training tests: one per data type.

Loaded into the browser tests' platform through ``DISCO_TASK_PROVIDERS`` (see conftest.py).
Their models are small enough to train in a few seconds in headless Chromium.
"""

from __future__ import annotations

import math
from typing import Any

from disco_client.keras_env import tf_keras
from tasks.choices import DataType, Scheme, Tokenizer
from tasks.spec import TaskSpec

TABULAR_COLUMNS = ["a", "b", "c", "d"]
SHAPE_LABELS = ["circle", "square"]
TEXT_LENGTH = 16
TEXT_VOCAB = 257


class TinyTabular:
    """Binary classification of 4 numeric columns (tasks.sample_data.learnable_tabular_csv)."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="tiny_tabular", title="Tiny tabular", summary_preview="A 4-column binary classifier for tests.",
            data_format="A CSV with columns a, b, c, d and label (0 or 1).",
            data_type=DataType.TABULAR, scheme=Scheme.LOCAL, epochs=8, round_duration=2, batch_size=16,
            validation_split=0.2, min_participants=1, input_columns=TABULAR_COLUMNS, output_columns=["label"],
            preprocessing=["sanitize", "standardize"],
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input(shape=(len(TABULAR_COLUMNS),)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ], name="tiny_mlp")
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy",
                      metrics=["accuracy"])
        return model


class TinyShapes:
    """Circles against squares, 16x16 RGB (tasks.sample_data.shapes), with a 4-filter CNN."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="tiny_shapes", title="Tiny shapes", summary_preview="Circles or squares, 16x16, for tests.",
            data_type=DataType.IMAGE, scheme=Scheme.LOCAL, epochs=6, round_duration=2, batch_size=16,
            validation_split=0.2, min_participants=1, image_height=16, image_width=16, image_channels=3,
            labels=SHAPE_LABELS, preprocessing=["resize", "normalize"],
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input(shape=(16, 16, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(len(SHAPE_LABELS), activation="softmax"),
        ], name="tiny_cnn")
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        return model


class TinyText:
    """A 1-layer, 1-head version of the wikitext GPT with 16 tokens of context."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="tiny_text", title="Tiny text", summary_preview="A one-layer GPT over 16 bytes, for tests.",
            data_type=DataType.TEXT, scheme=Scheme.LOCAL, epochs=2, round_duration=1, batch_size=8,
            validation_split=0.1, min_participants=1, preprocessing=["tokenize", "pad"], tokenizer=Tokenizer.BYTES,
            max_sequence_length=TEXT_LENGTH,
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        keras.utils.set_random_seed(0)
        layers = keras.layers
        d = 16
        tokens = keras.Input(shape=(TEXT_LENGTH,), dtype="int32", name="tokens")
        pos = keras.Input(shape=(TEXT_LENGTH,), dtype="int32", name="positions")
        mask = keras.Input(shape=(TEXT_LENGTH, TEXT_LENGTH), dtype="float32", name="causal_mask")
        x = layers.Add()([layers.Embedding(TEXT_VOCAB, d)(tokens), layers.Embedding(TEXT_LENGTH, d)(pos)])
        h = layers.LayerNormalization(epsilon=1e-5)(x)
        q, k, v = layers.Dense(d)(h), layers.Dense(d)(h), layers.Dense(d)(h)
        scores = layers.Rescaling(1.0 / math.sqrt(d))(layers.Dot(axes=(2, 2))([q, k]))
        weights = layers.Activation("softmax")(layers.Add()([scores, mask]))
        x = layers.Add()([x, layers.Dense(d)(layers.Dot(axes=(2, 1))([weights, v]))])
        h = layers.Dense(d, name="mlp_proj")(layers.Dense(4 * d, activation="gelu")(layers.LayerNormalization()(x)))
        x = layers.Add()([x, h])
        out = layers.Dense(TEXT_VOCAB, activation="softmax")(layers.LayerNormalization()(x))
        model = keras.Model([tokens, pos, mask], out, name="tiny_gpt")
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model


class TinyFederated(TinyTabular):
    """The tabular MLP as a federated task: three participants a round, one epoch a round, two rounds."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(**{
            **super().get_task().as_fields(), "id": "tiny_federated", "title": "Tiny federated",
            "summary_preview": "Train the 4-column classifier together, for tests.", "scheme": Scheme.FEDERATED,
            "epochs": 2, "round_duration": 1, "min_participants": 3, "round_deadline_seconds": 60,
            "preprocessing": ["sanitize"],
        })


class TinyFederatedPrivate(TinyTabular):
    """Federated with differential privacy: two participants, one round, clipping 0.005, noise scale 0.01."""

    clipping_radius = 0.005

    def get_task(self) -> TaskSpec:
        return TaskSpec(**{
            **super().get_task().as_fields(), "id": "tiny_federated_private", "title": "Tiny federated (private)",
            "summary_preview": "Train the 4-column classifier together with differential privacy, for tests.",
            "scheme": Scheme.FEDERATED, "epochs": 1, "round_duration": 1, "min_participants": 2,
            "round_deadline_seconds": 60, "preprocessing": ["sanitize"], "clipping_radius": self.clipping_radius,
            "noise_scale": 0.01,
        })


class TinyFederatedInvited(TinyTabular):
    """Federated and invitation-only: one participant, one round."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(**{
            **super().get_task().as_fields(), "id": "tiny_federated_invited", "title": "Tiny federated (invited)",
            "summary_preview": "Train the 4-column classifier, invited participants only, for tests.",
            "scheme": Scheme.FEDERATED, "epochs": 1, "round_duration": 1, "min_participants": 1,
            "round_deadline_seconds": 60, "preprocessing": ["sanitize"], "participation": "invited",
        })


class TinyFederatedPair(TinyTabular):
    """Federated, two participants a round, two rounds (the recovery test: a page and a Python participant)."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(**{
            **super().get_task().as_fields(), "id": "tiny_federated_pair", "title": "Tiny federated (pair)",
            "summary_preview": "Train the 4-column classifier with one other participant, for tests.",
            "scheme": Scheme.FEDERATED, "epochs": 2, "round_duration": 1, "min_participants": 2,
            "round_deadline_seconds": 60, "preprocessing": ["sanitize"],
        })
