"""Simple Face: child or adult face classification.

Architecture: MobileNetV2 (Sandler et al., 2018) with width multiplier alpha=0.35 at
200x200, cut at global average pooling, then dense 1024 (ReLU) and a 2-way softmax —
DISCO's ``simple_face`` task. Built flat (one functional model, MobileNetV2 not nested
as a sub-model) so that TF.js sees a plain list of layers. Random initial weights.
"""

from __future__ import annotations

from typing import Any

from disco_client.keras_env import tf_keras
from tasks.choices import Aggregator, DataType, Scheme
from tasks.spec import TaskSpec

IMAGE_SIZE = 200
CHANNELS = 3
LABELS = ["child", "adult"]


class SimpleFaceProvider:
    """Provider of the ``simple_face`` task."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="simple_face",
            title="Simple Face",
            summary_preview="Tell children's faces from adults' faces, training on photos that stay on your device.",
            summary_overview=(
                "A simple face classification task: given a photo of a face, say whether it is a "
                "child's or an adult's. Face photos are personal data, which makes them a natural "
                "case for collaborative learning where the photos never leave their owners.\n\n"
                "Participants train in federated rounds of one epoch each; the server averages their "
                "weights after every round."
            ),
            model_description=(
                "MobileNetV2 with width multiplier 0.35 on 200x200 RGB images, global average pooling, "
                "a dense layer of 1024 units (ReLU) and a 2-way softmax (about 1.7M parameters). "
                "Trained with SGD (learning rate 0.001) on categorical cross-entropy."
            ),
            data_format=(
                "Face photos as PNG or JPEG images of 200x200 pixels (pixel values are scaled to 0-1), "
                "labelled 'child' or 'adult', either by adding images per label group or with a CSV "
                "file of 'filename,label' lines."
            ),
            data_example_text="A 200x200 photo of a child's face, labelled child.",
            sample_dataset_instructions=(
                "Collect face photos you may use (for instance from a public face data set with age "
                "annotations such as UTKFace), crop them to the face, resize them to 200x200, sort "
                "them into 'child' and 'adult' folders and add each folder under its label group."
            ),
            data_type=DataType.IMAGE,
            scheme=Scheme.FEDERATED,
            epochs=50,
            round_duration=1,
            batch_size=10,
            validation_split=0.2,
            min_participants=2,
            image_height=IMAGE_SIZE,
            image_width=IMAGE_SIZE,
            image_channels=CHANNELS,
            labels=LABELS,
            preprocessing=["normalize"],
            aggregator=Aggregator.MEAN,
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        base = keras.applications.MobileNetV2(
            alpha=0.35,
            input_shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS),
            include_top=False,
            pooling="avg",
            weights=None,
        )
        x = keras.layers.Dense(1024, activation="relu", name="dense_1024")(base.output)
        out = keras.layers.Dense(len(LABELS), activation="softmax", name="predictions")(x)
        model = keras.Model(base.input, out, name="simple_face_mobilenetv2")
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.001),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model


provider = SimpleFaceProvider()
