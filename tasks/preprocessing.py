"""The registry of preprocessing step names a task may declare, per data type.

The steps themselves run in the browser (``static/disco/``); the server only checks
that a task names steps the client knows. A self-hoster who adds a step to the
browser registry declares it here too, in one call::

    from tasks.preprocessing import register_preprocessing
    register_preprocessing("image", "halve", "Divide each pixel value by 2.")
"""

from __future__ import annotations

from .choices import DEFAULT_PREPROCESSING, DataType

_registry: dict[str, dict[str, str]] = {dt: dict(steps) for dt, steps in DEFAULT_PREPROCESSING.items()}


def register_preprocessing(data_type: str, name: str, description: str) -> None:
    """Declare a preprocessing step ``name`` for tasks of ``data_type``."""
    if data_type not in DataType.values:
        raise ValueError(f"Unknown data type {data_type!r}; expected one of {', '.join(DataType.values)}.")
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"Preprocessing step names are letters, digits and underscores; got {name!r}.")
    _registry[data_type][name] = description


def preprocessing_steps(data_type: str) -> dict[str, str]:
    """The known steps for ``data_type`` (name -> description)."""
    return dict(_registry.get(data_type, {}))
