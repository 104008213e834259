"""Lung ultrasound (LUS) COVID-19 classification.

Architecture: the small CNN of DISCO's ``lus_covid`` task (conv 8 5x5 -> max-pool ->
conv 16 5x5 -> max-pool -> flatten -> dense 2 softmax) on 100x100 RGB frames.
"""

from __future__ import annotations

from typing import Any

from disco_client.keras_env import tf_keras
from tasks.choices import Aggregator, DataType, Scheme
from tasks.spec import TaskSpec

IMAGE_SIZE = 100
CHANNELS = 3
LABELS = ["COVID-Positive", "COVID-Negative"]


class LusCovidProvider:
    """Provider of the ``lus_covid`` task."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="lus_covid",
            title="Lung Ultrasound Image Classification",
            summary_preview="Tell COVID-positive from COVID-negative lung ultrasound images, across hospitals.",
            summary_overview=(
                "Lung ultrasound (LUS) is cheap, portable and radiation-free, and shows patterns "
                "typical of COVID-19 pneumonia. This task trains a classifier that labels an ultrasound "
                "frame as COVID-positive or COVID-negative.\n\n"
                "Medical images cannot leave the hospital that made them. With federated learning each "
                "site trains on its own images in the browser and only model weights are sent to the "
                "server, which averages them into a common model."
            ),
            model_description=(
                "A small convolutional network on 100x100 RGB frames: a 5x5 convolution with 8 filters "
                "(ReLU), 2x2 max-pooling, a 5x5 convolution with 16 filters (ReLU), 2x2 max-pooling, "
                "then flatten and a 2-way softmax. Trained with SGD on categorical cross-entropy."
            ),
            data_format=(
                "Lung ultrasound frames as PNG or JPEG images (any size: they are resized to 100x100 "
                "and scaled to 0-1), labelled COVID-Positive or COVID-Negative, either by adding "
                "images per label group or with a CSV file of 'filename,label' lines."
            ),
            data_example_text="A B-mode lung ultrasound frame of a patient who tested positive: COVID-Positive.",
            sample_dataset_instructions=(
                "Use ultrasound frames your institution may share for research, exported as images. "
                "Public collections such as the POCUS lung ultrasound data set "
                "(github.com/jannisborn/covid19_ultrasound) provide frames extracted from videos; "
                "sort them into the two label groups."
            ),
            data_type=DataType.IMAGE,
            scheme=Scheme.FEDERATED,
            epochs=50,
            round_duration=2,
            batch_size=5,
            validation_split=0.2,
            min_participants=2,
            image_height=IMAGE_SIZE,
            image_width=IMAGE_SIZE,
            image_channels=CHANNELS,
            labels=LABELS,
            preprocessing=["resize", "normalize"],
            aggregator=Aggregator.MEAN,
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        layers = keras.layers
        model = keras.Sequential(
            [
                keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)),
                layers.Conv2D(8, 5, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Conv2D(16, 5, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(len(LABELS), activation="softmax"),
            ],
            name="lus_covid_cnn",
        )
        model.compile(optimizer=keras.optimizers.SGD(), loss="categorical_crossentropy", metrics=["accuracy"])
        return model


provider = LusCovidProvider()
