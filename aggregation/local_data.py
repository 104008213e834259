"""A Python participant's local data: a CSV, an image folder or an ``.npz``, shaped for the task.

The browser client applies the same preprocessing steps (``static/disco/preprocessing.js``);
here they are applied with numpy and Pillow.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


class DataError(ValueError):
    """The data does not fit the task; the message names what is missing."""


def _number(value: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0  # the 'sanitize' step: missing or non-numeric -> 0
    return number if np.isfinite(number) else 0.0


def tabular_from_csv(text: str, training: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Input and output columns of a CSV as float32 arrays (standardised when the task says so)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise DataError("The CSV file has no data rows.")
    inputs, outputs = training["inputColumns"], training["outputColumns"]
    missing = [c for c in (*inputs, *outputs) if c not in rows[0]]
    if missing:
        raise DataError(f"The CSV file lacks the column(s) {', '.join(missing)}; its header has "
                        f"{', '.join(rows[0])}.")
    x = np.array([[_number(r[c]) for c in inputs] for r in rows], dtype=np.float32)
    y = np.array([[_number(r[c]) for c in outputs] for r in rows], dtype=np.float32)
    if "standardize" in training.get("preprocessingFunctions", []):
        x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    return x, y


def images_from_folder(folder: Path, training: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Images in one sub-folder per label (or listed in labels.csv), resized and scaled as the task says."""
    from PIL import Image

    labels = training["LABEL_LIST"]
    height, width = training["IMAGE_H"], training["IMAGE_W"]
    channels = training.get("imageChannels") or 3
    pairs: list[tuple[Path, str]] = []
    listing = folder / "labels.csv"
    if listing.is_file():
        pairs = [(folder / r["filename"], r["label"]) for r in csv.DictReader(listing.open())]
    else:
        pairs = [(p, p.parent.name) for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    unknown = sorted({label for _, label in pairs if label not in labels})
    if unknown:
        raise DataError(f"Unknown label(s) {', '.join(unknown)}; the task's labels are {', '.join(labels)}.")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    x = np.stack([np.asarray(Image.open(p).convert(mode).resize((width, height)), dtype=np.float32).reshape(
        height, width, channels) for p, _ in pairs])
    if "normalize" in training.get("preprocessingFunctions", []):
        x /= 255.0
    y = np.array([labels.index(label) for _, label in pairs], dtype=np.float32)
    return x, y


def load_local_data(path: Path, task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from ``path``: a CSV for tabular tasks, an image folder, or an .npz holding ``x`` and ``y``."""
    training = task["trainingInformation"]
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            return data["x"].astype(np.float32), data["y"].astype(np.float32)
    if path.is_dir():
        return images_from_folder(path, training)
    if training["dataType"] == "tabular":
        return tabular_from_csv(path.read_text(encoding="utf-8"), training)
    raise DataError(f"{path}: give a CSV (tabular tasks), an image folder (image tasks) or an .npz with x and y.")


def sample_data(task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The task's generated sample data (predefined tasks), as (x, y)."""
    import tempfile

    from tasks.sample_data import sample_files

    files = sample_files(task["id"])
    training = task["trainingInformation"]
    if training["dataType"] == "tabular":
        (text,) = [data.decode() for name, data in files.items() if name.endswith(".csv")]
        return tabular_from_csv(text, training)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return images_from_folder(Path(tmp), training)


def split(x: np.ndarray, y: np.ndarray, parts: int, *, non_iid: bool = False,
          seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split (x, y) among ``parts`` participants: shuffled (IID), or sorted by label (non-IID)."""
    if parts < 1 or len(y) < parts:
        raise DataError(f"Cannot split {len(y)} samples among {parts} participants.")
    order = np.argsort(y.reshape(len(y), -1)[:, 0], kind="stable") if non_iid else \
        np.random.default_rng(seed).permutation(len(y))
    return [(x[idx], y[idx]) for idx in np.array_split(order, parts)]
