"""MNIST handwritten digit recognition.

Architecture: the small CNN of DISCO's ``mnist`` task (conv 8 -> conv 16 -> max-pool ->
dropout -> dense 32 -> dropout -> dense 10 softmax), itself after the Keras MNIST
convnet example, trained decentralised with secure aggregation.
"""

from __future__ import annotations

from typing import Any

from disco_client.keras_env import tf_keras
from tasks.choices import Aggregator, DataType, Scheme
from tasks.spec import TaskSpec

IMAGE_SIZE = 28
CHANNELS = 3
LABELS = [str(d) for d in range(10)]


class MnistProvider:
    """Provider of the ``mnist`` task."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="mnist",
            title="Handwritten Digit Recognition",
            summary_preview="Recognise handwritten digits 0-9 together, without sharing your images.",
            summary_overview=(
                "The MNIST data set of handwritten digits is the classic first problem of image "
                "classification: each 28x28 picture shows one digit, 0 to 9, and the model learns to "
                "say which.\n\n"
                "Here participants train one model together, peer to peer: every few epochs the peers "
                "exchange their model updates directly with secure aggregation, so no one — not even "
                "the server — sees another participant's update, and the images never leave the "
                "participants' devices."
            ),
            model_description=(
                "A small convolutional network: two 5x5 convolutions (8 and 16 filters, ReLU), 2x2 "
                "max-pooling, dropout 0.25, a dense layer of 32 units (ReLU), dropout 0.25 and a "
                "10-way softmax. Trained with Adam on categorical cross-entropy."
            ),
            data_format=(
                "Images of single handwritten digits (PNG or JPEG, any size: they are resized to "
                "28x28 and their pixel values scaled to 0-1). Give the label of each image either by "
                "adding images per label group (0 to 9) or with a CSV file of 'filename,label' lines."
            ),
            data_example_text="A 28x28 image of a handwritten '7', labelled 7.",
            sample_dataset_instructions=(
                "Any images of single handwritten digits work. To try the task, export a few hundred "
                "images of the public MNIST data set as PNG files (e.g. with tensorflow_datasets or "
                "torchvision) and add them under their digit's label group; each participant should "
                "use a different part of the data set."
            ),
            data_type=DataType.IMAGE,
            scheme=Scheme.DECENTRALIZED,
            epochs=20,
            round_duration=2,
            batch_size=64,
            validation_split=0.2,
            min_participants=3,
            image_height=IMAGE_SIZE,
            image_width=IMAGE_SIZE,
            image_channels=CHANNELS,
            labels=LABELS,
            preprocessing=["resize", "normalize"],
            aggregator=Aggregator.SECURE,
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        layers = keras.layers
        model = keras.Sequential(
            [
                keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)),
                layers.Conv2D(8, 5, activation="relu"),
                layers.Conv2D(16, 5, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Dropout(0.25),
                layers.Flatten(),
                layers.Dense(32, activation="relu"),
                layers.Dropout(0.25),
                layers.Dense(len(LABELS), activation="softmax"),
            ],
            name="mnist_cnn",
        )
        model.compile(optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
        return model


provider = MnistProvider()
