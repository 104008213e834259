"""A self-hoster's provider, as the README documents it (used by the provider tests)."""

from __future__ import annotations

from tasks.spec import TaskSpec
from tests.conftest import build_tiny_keras_model


class TinyProvider:
    def get_task(self) -> TaskSpec:
        return TaskSpec(
            id="tiny-custom", title="Tiny custom task", summary_preview="Registered through settings.",
            data_type="tabular", input_columns=["a", "b", "c", "d"], output_columns=["label"],
            epochs=2, round_duration=1,
        )

    def get_model(self):
        return build_tiny_keras_model()


class BrokenProvider(TinyProvider):
    def get_task(self) -> TaskSpec:
        return TaskSpec(id="broken-model", title="Broken", summary_preview="Its model cannot be built.",
                        data_type="tabular", input_columns=["a"], output_columns=["b"], epochs=2, round_duration=1)

    def get_model(self):
        raise RuntimeError("the architecture needs a layer that does not exist")


class NotAProvider:
    def get_task(self) -> TaskSpec:
        return TinyProvider().get_task()
