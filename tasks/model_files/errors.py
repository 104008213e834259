"""The one error every model-file check raises."""

from __future__ import annotations


class UploadError(ValueError):
    """The upload cannot become a model version; ``problems`` lists every reason, each saying what to do."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(" ".join(self.problems))
