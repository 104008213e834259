"""The benchmark's task: one dense layer sized to P parameters (read from DISCO_BENCH_PARAMS), N participants."""

from __future__ import annotations

import os

from disco_client.keras_env import tf_keras
from tasks.spec import TaskSpec

UNITS = 1000


def inputs_for(params: int) -> int:
    """Inputs k with k * UNITS + UNITS == params (P is a multiple of 1000 in the benchmark)."""
    return params // UNITS - 1


class BenchTask:
    def get_task(self) -> TaskSpec:
        params = int(os.environ.get("DISCO_BENCH_PARAMS", "200000"))
        participants = int(os.environ.get("DISCO_BENCH_PARTICIPANTS", "2"))
        return TaskSpec(
            id="bench", title="Round benchmark", summary_preview=f"{params:,} parameters.", data_type="tabular",
            scheme="federated", input_columns=[f"x{i}" for i in range(inputs_for(params))], output_columns=["y"],
            epochs=1, round_duration=1, min_participants=participants, round_deadline_seconds=120,
        )

    def get_model(self):
        keras = tf_keras()
        params = int(os.environ.get("DISCO_BENCH_PARAMS", "200000"))
        model = keras.Sequential([keras.layers.Input(shape=(inputs_for(params),)), keras.layers.Dense(UNITS)])
        model.compile(optimizer="sgd", loss="mse")
        return model
