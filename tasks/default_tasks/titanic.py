"""Titanic survival prediction (tabular binary classification).

Architecture: the multilayer perceptron of DISCO's ``titanic`` task — dense 124 -> 64 ->
32 (ReLU) -> 1 sigmoid on five numeric columns of Kaggle's Titanic passenger list.
"""

from __future__ import annotations

from typing import Any

from disco_client.keras_env import tf_keras
from tasks.choices import Aggregator, DataType, Scheme
from tasks.spec import TaskSpec

INPUT_COLUMNS = ["Age", "SibSp", "Parch", "Fare", "Pclass"]
OUTPUT_COLUMNS = ["Survived"]

# The first three rows of Kaggle's train.csv, one entry per column.
_EXAMPLE_ROWS: list[dict[str, str]] = [
    {"PassengerId": "1", "Survived": "0", "Pclass": "3", "Name": "Braund, Mr. Owen Harris", "Sex": "male",
     "Age": "22", "SibSp": "1", "Parch": "0", "Ticket": "A/5 21171", "Fare": "7.25", "Cabin": "", "Embarked": "S"},
    {"PassengerId": "2", "Survived": "1", "Pclass": "1", "Name": "Cumings, Mrs. John Bradley (Florence Briggs Thayer)",
     "Sex": "female", "Age": "38", "SibSp": "1", "Parch": "0", "Ticket": "PC 17599", "Fare": "71.2833",
     "Cabin": "C85", "Embarked": "C"},
    {"PassengerId": "3", "Survived": "1", "Pclass": "3", "Name": "Heikkinen, Miss. Laina", "Sex": "female",
     "Age": "26", "SibSp": "0", "Parch": "0", "Ticket": "STON/O2. 3101282", "Fare": "7.925", "Cabin": "",
     "Embarked": "S"},
]
DATA_EXAMPLE: list[dict[str, Any]] = [
    {"columnName": column, "columnData": [row[column] for row in _EXAMPLE_ROWS]} for column in _EXAMPLE_ROWS[0]
]


class TitanicProvider:
    """Provider of the ``titanic`` task."""

    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="titanic",
            title="Titanic Prediction",
            summary_preview="Predict which Titanic passengers survived from their age, family, fare and class.",
            summary_overview=(
                "On 15 April 1912 the RMS Titanic sank after hitting an iceberg; 1,502 of its 2,224 "
                "passengers and crew died. Some groups of people were more likely to survive than "
                "others. This task, after Kaggle's famous introductory competition, trains a model that "
                "predicts whether a passenger survived from their age, the number of siblings or "
                "spouses and of parents or children aboard, the fare they paid and their ticket class.\n\n"
                "Each participant holds part of the passenger list; the server averages the "
                "participants' models after every round, and the rows themselves stay in the browser."
            ),
            model_description=(
                "A multilayer perceptron taking the five numeric columns Age, SibSp, Parch, Fare and "
                "Pclass: dense layers of 124, 64 and 32 units (ReLU) and one sigmoid output, the "
                "probability of survival. Trained with Adam on binary cross-entropy."
            ),
            data_format=(
                "A CSV file with a header row, as Kaggle's Titanic train.csv: one passenger per row, "
                "with at least the columns Age, SibSp, Parch, Fare and Pclass (inputs) and Survived "
                "(0 or 1, the output to predict). Other columns (Name, Sex, Ticket, ...) are ignored; "
                "missing or non-numeric values are replaced by 0."
            ),
            data_example_text="The first rows of Kaggle's Titanic train.csv:",
            data_example=DATA_EXAMPLE,
            sample_dataset_link="https://www.kaggle.com/c/titanic/data",
            sample_dataset_instructions=(
                "Download train.csv from Kaggle's Titanic competition (a free Kaggle account is needed) "
                "and connect it as it is. To simulate several participants, split its rows into a few "
                "CSV files, each keeping the header row."
            ),
            data_type=DataType.TABULAR,
            scheme=Scheme.FEDERATED,
            epochs=10,
            round_duration=2,
            batch_size=30,
            validation_split=0.2,
            min_participants=2,
            labels=[],
            input_columns=INPUT_COLUMNS,
            output_columns=OUTPUT_COLUMNS,
            preprocessing=["sanitize"],
            aggregator=Aggregator.MEAN,
        )

    def get_model(self) -> Any:
        keras = tf_keras()
        layers = keras.layers
        model = keras.Sequential(
            [
                keras.Input(shape=(len(INPUT_COLUMNS),)),
                layers.Dense(124, activation="relu"),
                layers.Dense(64, activation="relu"),
                layers.Dense(32, activation="relu"),
                layers.Dense(len(OUTPUT_COLUMNS), activation="sigmoid"),
            ],
            name="titanic_mlp",
        )
        model.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy", metrics=["accuracy"])
        return model


provider = TitanicProvider()
