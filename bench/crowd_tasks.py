"""The crowd benchmark's task: one dense layer of P parameters (DISCO_CROWD_PARAMS), federated.

bench/crowd.py sets its participants and aggregator on the task's row before each configuration."""

from __future__ import annotations

import os

from bench.round_tasks import UNITS, inputs_for
from disco_client.keras_env import tf_keras
from tasks.spec import TaskSpec


class CrowdTask:
    def get_task(self) -> TaskSpec:
        params = int(os.environ.get("DISCO_CROWD_PARAMS", "200000"))
        return TaskSpec(
            id="crowd", title="Crowd benchmark", summary_preview=f"{params:,} parameters.", data_type="tabular",
            scheme="federated", input_columns=[f"x{i}" for i in range(inputs_for(params))], output_columns=["y"],
            epochs=1, round_duration=1, min_participants=2, round_deadline_seconds=600,
        )

    def get_model(self):
        keras = tf_keras()
        params = int(os.environ.get("DISCO_CROWD_PARAMS", "200000"))
        model = keras.Sequential([keras.layers.Input(shape=(inputs_for(params),)), keras.layers.Dense(UNITS)])
        model.compile(optimizer="sgd", loss="mse")
        return model
