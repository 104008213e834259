"""The optional TensorFlow layer: the task's TF.js model in ``tf_keras``, trained as the training page trains it.

The only module of ``disco_client`` that uses TensorFlow (``tf_keras`` and ``tensorflowjs``, imported
when a model is first loaded, through ``disco_client.keras_env``). It downloads a version's model.json
and shards, checks the configuration against the allow-list (``disco_client.model_allowlist``) before
``tf_keras`` reads anything, loads it, compiles it as the page does (``disco_client.training_config``:
the author's loss and optimizer), and wraps it in ``KerasTrainer`` for the protocol clients::

    client = KerasFederatedClient("http://127.0.0.1:8000", "titanic")
    history = asyncio.run(client.run(x, y, rounds=3))   # or KerasDecentralizedClient for decentralized tasks
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .keras_env import safe_mode, tensorflowjs
from .model_allowlist import config_problems
from .participant import FederatedClient, RoundResult
from .peer import DecentralizedClient, PeerRoundResult
from .remote import ParticipantError, _rows, split_indices
from .trainer import Scores
from .training_config import compile_for_training


@dataclass
class KerasTrainer:
    """A ``Trainer`` over a compiled ``tf_keras`` model: ``fit`` with the task's batch size, ``evaluate``.

    ``weight_order``: the task's weight-manifest names, the order the protocols exchange weights in.
    """

    model: Any
    weight_order: list[str]
    x: Any
    y: np.ndarray
    batch_size: int = 32
    x_val: Any = None
    y_val: np.ndarray | None = None

    @property
    def samples(self) -> int:
        return len(self.y)

    def _variables(self) -> list[Any]:
        by_name = {_weight_name(v): v for v in self.model.weights}
        return [by_name[name] for name in self.weight_order]

    def get_weights(self) -> list[np.ndarray]:
        return [np.asarray(v.numpy(), dtype=np.float32) for v in self._variables()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        for variable, value in zip(self._variables(), weights, strict=True):
            variable.assign(np.asarray(value, dtype=np.float32).reshape(variable.shape))

    def train(self, epochs: int) -> float:
        history = self.model.fit(self.x, self.y, epochs=epochs, batch_size=self.batch_size, verbose=0)
        return float(history.history["loss"][-1])

    def _scores(self, x: Any, y: np.ndarray) -> Scores:
        scores = self.model.evaluate(x, y, verbose=0, return_dict=True)
        accuracy = scores.get("accuracy", scores.get("acc"))
        return float(scores["loss"]), None if accuracy is None else float(accuracy), len(y)

    def evaluate(self) -> Scores:
        return self._scores(self.x, self.y)

    def validate(self) -> Scores | None:
        if self.y_val is None or not len(self.y_val):
            return None
        return self._scores(self.x_val, self.y_val)


class KerasClient:
    """What the TensorFlow layer adds to a protocol client (mixed into ``KerasFederatedClient`` and
    ``KerasDecentralizedClient``): loading, compiling and training the task's model."""

    model: Any

    def fetch_version(self, number: int, directory: Path) -> Path:
        """Download a fixed version's model.json and shards into ``directory``.

        The model is checked as an upload would be before anything reads it: the allow-list
        (``disco_client.model_allowlist``) over its whole configuration, so a model that carries
        code never reaches ``tf_keras`` on the participant's machine, and plain shard names, so
        no file is written outside ``directory``, whoever serves the model.
        """
        base = f"/tasks/{self.task_id}/versions/{number}/"
        model_json = json.loads(self._get(base + "model.json"))
        problems = config_problems(model_json)
        if problems:
            raise ParticipantError(f"Version {number} of task {self.task_id!r} was not loaded: " + " ".join(problems))
        for group in model_json["weightsManifest"]:
            for name in group["paths"]:
                if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
                    raise ParticipantError(f"Version {number} of task {self.task_id!r} names a weight file "
                                           f"{str(name)[:80]!r} that is not a plain file name; it was not loaded.")
                (directory / name).write_bytes(self._get(base + name))
        (directory / "model.json").write_text(json.dumps(model_json))
        self.weight_order = [w["name"] for group in model_json["weightsManifest"] for w in group["weights"]]
        self.topology = model_json["modelTopology"]
        return directory / "model.json"

    def load_keras_model(self, number: int) -> Any:
        converters = tensorflowjs().converters
        with tempfile.TemporaryDirectory(prefix="disco-participant-") as tmp:
            path = self.fetch_version(number, Path(tmp))
            with safe_mode():
                return converters.load_keras_model(str(path))

    def set_version_weights(self, model: Any, number: int) -> None:
        """Overwrite ``model``'s weights with version ``number``'s, matched by name."""
        weights = self.fetch_weights(number)
        by_name = {_weight_name(v): v for v in model.weights}
        for name, value in zip(self.weight_order, weights, strict=True):
            by_name[name].assign(value)

    def compile_for_training(self, model: Any) -> str:
        """Compile ``model`` as the training page compiles this task's model.json; return the loss.

        The author's ``training_config`` (loss, Adam / SGD with momentum / RMSprop and learning rate)
        when the page understands it, else the page's defaults (``disco_client.training_config``).
        """
        data_type = (self.task.get("trainingInformation") or {}).get("dataType")
        return compile_for_training(model, self.topology.get("training_config"), data_type).loss

    async def join_with_model(self, y: np.ndarray) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
        """Fetch the task, connect, and load its current model compiled for local training.

        Returns the task's trainingInformation, the server's welcome and ``y`` as the loss wants it.
        """
        info = self.fetch_task()["trainingInformation"]
        welcome = await self.connect()
        model = self.model = self.load_keras_model(welcome["currentVersion"])
        loss = self.compile_for_training(model)
        return info, welcome, encode_targets(y, loss, model.output_shape[-1])

    def trainer(self, x: Any, y: np.ndarray, info: dict[str, Any],
                validation: tuple[Any, np.ndarray] | None = None) -> KerasTrainer:
        """A ``KerasTrainer`` for ``self.model`` on (x, y) and the validation split scored after each round.

        ``validation``: the participant's own (x, y), used as given (its labels encoded as the loss
        wants). Without it the task's ``validationSplit`` share of (x, y) is held out, as the browser does.
        """
        model = self.model
        if validation is not None:
            x_val, y_val = validation
            y_val = encode_targets(np.asarray(y_val), model.loss, model.output_shape[-1])
        else:
            train, held = split_indices(len(y), float(info.get("validationSplit") or 0.0))
            x_val, y_val = (_rows(x, held), y[held]) if len(held) else (None, None)
            if len(held):
                x, y = _rows(x, train), y[train]
        return KerasTrainer(model, list(self.weight_order), x, y, int(info.get("batchSize") or 32), x_val, y_val)

    async def train_local_round(self, x: Any, y: np.ndarray, info: dict[str, Any], epochs: int | None = None) -> float:
        """Train ``self.model`` for a round on all of (x, y) (privacy as in ``train_round``); the last loss."""
        trainer = KerasTrainer(self.model, list(self.weight_order), x, y, int(info.get("batchSize") or 32))
        return await self.train_round(trainer, info, epochs)

    # --- Weights as one vector -------------------------------------------------------------
    def model_vector(self, model: Any) -> np.ndarray:
        """All of ``model``'s weights in the manifest's order, as one float32 vector."""
        return np.concatenate([v.ravel() for _, v in self.model_tensors(model)]).astype(np.float32)

    def model_tensors(self, model: Any) -> list[tuple[str, np.ndarray]]:
        """(name, array) pairs in the manifest's order, as the codec takes them."""
        by_name = {_weight_name(v): v for v in model.weights}
        return [(name, by_name[name].numpy()) for name in self.weight_order]

    def set_model_vector(self, model: Any, vector: np.ndarray) -> None:
        """Write a flat vector (manifest order) back into ``model``'s weights."""
        KerasTrainer(model, list(self.weight_order), None, np.zeros(0)).set_weights(
            _split(vector, [v.shape for _, v in self.model_tensors(model)]))

    async def run(self, x: Any, y: np.ndarray, *, rounds: int, epochs_per_round: int | None = None,
                  on_round: Callable[[Any], None] | None = None,
                  validation: tuple[Any, np.ndarray] | None = None) -> list[Any]:
        """Train ``rounds`` rounds on (x, y); returns each round's local metrics.

        After each round the new model is scored on the validation split and the scores are reported to the
        server: ``validation`` when given, else the task's ``validationSplit`` share of (x, y), which is then
        not trained on.
        """
        info, welcome, y = await self.join_with_model(y)
        return await self.train_rounds(self.trainer(x, y, info, validation), info, welcome, rounds=rounds,
                                       epochs_per_round=epochs_per_round, on_round=on_round)


@dataclass
class KerasFederatedClient(KerasClient, FederatedClient):
    """A federated participant training the task's model in ``tf_keras``; ``run(x, y, rounds=...)``."""

    scheme: ClassVar[str] = "federated"
    model: Any = None

    async def run(self, x: Any, y: np.ndarray, *, rounds: int, epochs_per_round: int | None = None,
                  on_round: Callable[[RoundResult], None] | None = None,
                  validation: tuple[Any, np.ndarray] | None = None) -> list[RoundResult]:
        return await KerasClient.run(self, x, y, rounds=rounds, epochs_per_round=epochs_per_round,
                                     on_round=on_round, validation=validation)


@dataclass
class KerasDecentralizedClient(KerasClient, DecentralizedClient):
    """A decentralized peer training the task's model in ``tf_keras``; ``run(x, y, rounds=...)``."""

    scheme: ClassVar[str] = "decentralized"
    model: Any = None

    async def run(self, x: Any, y: np.ndarray, *, rounds: int, epochs_per_round: int | None = None,
                  on_round: Callable[[PeerRoundResult], None] | None = None,
                  validation: tuple[Any, np.ndarray] | None = None) -> list[PeerRoundResult]:
        return await KerasClient.run(self, x, y, rounds=rounds, epochs_per_round=epochs_per_round,
                                     on_round=on_round, validation=validation)


def _split(vector: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(np.asarray(vector[start:start + size], dtype=np.float32).reshape(shape))
        start += size
    return out


def encode_targets(y: np.ndarray, loss: str, classes: int) -> np.ndarray:
    """Labels as the loss wants them (``targetEncoding`` in trainer.js): one-hot for categorical
    cross-entropy over several classes, as given otherwise."""
    if loss == "categorical_crossentropy" and classes > 1 and (y.ndim == 1 or y.shape[-1] == 1):
        return np.eye(classes, dtype=np.float32)[y.reshape(-1).astype(int)]
    return y


def _weight_name(variable: Any) -> str:
    """A Keras variable's name as the TF.js manifest writes it (no ':0' suffix)."""
    name = getattr(variable, "path", None) or variable.name
    return name.split(":")[0]


__all__ = ["KerasClient", "KerasDecentralizedClient", "KerasFederatedClient", "KerasTrainer"]
