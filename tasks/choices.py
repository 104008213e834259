"""Enumerations shared by the Task model, its validation and the task specs of providers."""

from django.db import models

from aggregation.aggregators.registry import AGGREGATORS, SERVER_OPTIMIZERS, choices


class Scheme(models.TextChoices):
    FEDERATED = "federated", "Federated"
    DECENTRALIZED = "decentralized", "Decentralized"
    LOCAL = "local", "Local"


class DataType(models.TextChoices):
    IMAGE = "image", "Image"
    TABULAR = "tabular", "Tabular"
    TEXT = "text", "Text"


# Derived from the registry of aggregation rules (aggregation/aggregators/registry.py), in its order:
# ``Aggregator.MEAN == "mean"`` and so on.
Aggregator = models.TextChoices("Aggregator", [(name.upper(), (name, label))
                                               for name, label in choices(AGGREGATORS)])
ServerOptimizer = models.TextChoices("ServerOptimizer", [(name.upper(), (name, label))
                                                         for name, label in choices(SERVER_OPTIMIZERS)])


class Participation(models.TextChoices):
    """Who may take part in a task (its WebSocket rounds, model files, training page and sample data)."""

    OPEN = "open", "Anyone with the link"
    SIGNED_IN = "signed_in", "Anyone signed in to an account"
    INVITED = "invited", "Only people with an invitation link"


class Compression(models.TextChoices):
    """How participants encode their federated updates (``disco_client.codec``); each is lossier than the last."""

    FLOAT32 = "float32", "None: 32-bit floats, exact"
    FLOAT16 = "float16", "16-bit floats: half the bytes"
    INT8 = "int8", "8-bit integers with a scale per tensor: a quarter of the bytes"


class Tokenizer(models.TextChoices):
    BYTES = "bytes", "UTF-8 bytes (ships with the project)"


class Origin(models.TextChoices):
    INITIAL = "initial", "Initial model from the task's provider"
    UPLOAD = "upload", "Uploaded TF.js model"
    CONVERSION = "conversion", "Converted from an uploaded Keras model"
    ROUND = "round", "Aggregated in a training round"


# Preprocessing steps the browser client knows, per data type. A custom task adds its own
# with ``tasks.preprocessing.register_preprocessing`` (see README, "Adding a task").
DEFAULT_PREPROCESSING: dict[str, dict[str, str]] = {
    DataType.IMAGE: {
        "resize": "Resize each image to the task's IMAGE_H x IMAGE_W.",
        "normalize": "Scale pixel values from 0-255 to 0-1.",
    },
    DataType.TABULAR: {
        "sanitize": "Replace missing or non-numeric values with 0.",
        "standardize": "Subtract the mean and divide by the standard deviation of each input column.",
        "one_hot": "One-hot encode categorical input columns.",
    },
    DataType.TEXT: {
        "tokenize": "Split the text into tokens with the task's tokenizer.",
        "pad": "Left-pad or truncate token sequences to maxSequenceLength.",
    },
}
