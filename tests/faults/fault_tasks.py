"""The tiny tasks of the fault-injection suite (loaded through DISCO_TASK_PROVIDERS)."""

from __future__ import annotations

from disco_client.keras_env import tf_keras
from tasks.spec import TaskSpec

COLUMNS = ["a", "b", "c", "d", "e"]


class FaultTabular:
    """Five numeric columns -> one label; a 5 -> 4 -> 1 MLP (29 parameters) that numpy participants train.

    Two participants make a round; a round whose connected participants have not all sent closes after
    five seconds (the least a task may set), so a vanished participant costs a round five seconds."""

    task_id = "fault-tabular"
    hidden = 4

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id=self.task_id, title="Fault-injection tabular task", summary_preview="Generated tabular data.",
            data_type="tabular", scheme="federated", input_columns=COLUMNS, output_columns=["label"],
            epochs=6, round_duration=1, batch_size=16, min_participants=2, round_deadline_seconds=5,
        )

    def get_model(self):
        keras = tf_keras()
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.layers.Input(shape=(len(COLUMNS),)),
                                  keras.layers.Dense(self.hidden, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
        return model


class FaultConvert(FaultTabular):
    """The same model for another task: its conversion is the job a test kills its worker in."""

    task_id = "fault-convert"


PROVIDERS = "tests.faults.fault_tasks.FaultTabular,tests.faults.fault_tasks.FaultConvert"
