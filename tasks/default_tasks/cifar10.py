"""CIFAR-10 image classification.

Architecture: MobileNet v1 (Howard et al., 2017) with width multiplier alpha=0.25 at
224x224, cut at global average pooling, plus a 10-way softmax — DISCO's ``cifar10``
task. Built flat (one functional model, not MobileNet nested as a sub-model) so that
TF.js sees a plain list of layers. Random initial weights (nothing is downloaded).
"""

from __future__ import annotations

from typing import Any

from disco_client.keras_env import tf_keras
from tasks.choices import Aggregator, DataType, Scheme
from tasks.spec import TaskSpec

IMAGE_SIZE = 224
CHANNELS = 3
LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Cifar10Provider:
    """Provider of the ``cifar10`` task."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="cifar10",
            title="CIFAR10",
            summary_preview="Classify photos into 10 classes (airplane, cat, ship, ...) with differential privacy.",
            summary_overview=(
                "CIFAR-10 holds 32x32 colour photos of ten kinds of objects: airplanes, automobiles, "
                "birds, cats, deer, dogs, frogs, horses, ships and trucks. The task trains an image "
                "classifier for these ten classes.\n\n"
                "Participants train peer to peer (decentralised). Each update is clipped and noised "
                "(differential privacy: clipping radius 20, noise scale 1) before it is shared, so a "
                "shared update reveals little about any single training image."
            ),
            model_description=(
                "MobileNet v1 with width multiplier 0.25 (about 220k parameters), taking 224x224 RGB "
                "images, followed by global average pooling and a 10-way softmax. Trained with SGD on "
                "categorical cross-entropy from random initial weights."
            ),
            data_format=(
                "Colour images (PNG or JPEG, any size: they are resized to 224x224 and scaled to 0-1), "
                "each showing one object of the ten classes. Give labels by adding images per label "
                "group or with a CSV file of 'filename,label' lines, the label being one of the ten "
                "class names."
            ),
            data_example_text="A photo of a ship, labelled 'ship'.",
            sample_dataset_link="https://www.cs.toronto.edu/~kriz/cifar.html",
            sample_dataset_instructions=(
                "Download CIFAR-10 (the 'python' or 'binary' version) from the link, export some images "
                "as PNG files, and add them under their class's label group."
            ),
            data_type=DataType.IMAGE,
            scheme=Scheme.DECENTRALIZED,
            epochs=10,
            round_duration=10,
            batch_size=10,
            validation_split=0.2,
            min_participants=3,
            image_height=IMAGE_SIZE,
            image_width=IMAGE_SIZE,
            image_channels=CHANNELS,
            labels=LABELS,
            preprocessing=["resize", "normalize"],
            clipping_radius=20.0,
            noise_scale=1.0,
            aggregator=Aggregator.MEAN,
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        base = keras.applications.MobileNet(
            alpha=0.25,
            input_shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS),
            include_top=False,
            pooling="avg",
            weights=None,
        )
        out = keras.layers.Dense(len(LABELS), activation="softmax", name="predictions")(base.output)
        model = keras.Model(base.input, out, name="cifar10_mobilenet")
        model.compile(optimizer=keras.optimizers.SGD(), loss="categorical_crossentropy", metrics=["accuracy"])
        return model


provider = Cifar10Provider()
