"""A Python participant's local data: a CSV, an image folder or an ``.npz``, shaped for the task.

The browser client applies the same preprocessing steps (``static/disco/preprocessing.js``);
here they are applied with numpy, and Pillow for image folders (imported only when one is read).
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


def text_windows(text: str, training: dict[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Next-token windows of a text task, as the browser cuts them (``windows`` in preprocessing.js).

    The text is encoded with the task's tokenizer (shipped, nothing downloaded) and cut into windows of
    ``maxSequenceLength + 1`` ids starting every ``maxSequenceLength`` ids, the last one left-padded. x is the
    GPT model's three named inputs (``tasks/default_tasks/wikitext.py``): ``tokens`` (int32, n x L),
    ``positions`` and ``causal_mask`` (the same for every window: broadcast views, no copies); y the
    next-token targets, float32 n x L x 1.
    """
    from .tokenizers import get_tokenizer

    length = int(training.get("maxSequenceLength") or 128)
    try:
        tokenizer = get_tokenizer(training.get("tokenizer") or "bytes")
    except KeyError as exc:
        raise DataError(str(exc.args[0])) from None
    ids = tokenizer.encode(text)
    if not ids:
        raise DataError("The text is empty: nothing to train on.")
    if len(ids) <= length + 1:
        windows = [tokenizer.left_pad(ids, length + 1)]
    else:
        starts = range(0, len(ids) - length, length)
        windows = [ids[s:s + length + 1] for s in starts]
        rest = starts[-1] + length
        if rest + 1 < len(ids):
            windows.append(tokenizer.left_pad(ids[rest:], length + 1))
    ids_array = np.array(windows, dtype=np.int32)
    return text_inputs(ids_array[:, :-1]), ids_array[:, 1:, None].astype(np.float32)


def text_inputs(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The GPT model's inputs for ``tokens`` (n x L): positions 0..L-1 and the causal mask (0 on and below the
    diagonal, -1e9 above), broadcast over the n windows."""
    n, length = tokens.shape
    above = np.triu(np.ones((length, length), dtype=bool), k=1)
    mask = np.where(above, np.float32(-1e9), np.float32(0.0)).astype(np.float32)
    return {"tokens": tokens, "positions": np.broadcast_to(np.arange(length, dtype=np.int32), (n, length)),
            "causal_mask": np.broadcast_to(mask, (n, length, length))}


def take(x: Any, idx: np.ndarray) -> Any:
    """Samples ``idx`` of x: an array, or a text task's inputs (``text_inputs``)."""
    if isinstance(x, dict):
        return text_inputs(x["tokens"][idx])
    return x[idx]


def load_local_data(path: Path, task: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """(x, y) from ``path``: a CSV for tabular tasks, an image folder, text files (a file, or a folder of .txt
    files) for text tasks, or an .npz holding ``x`` and ``y``."""
    training = task["trainingInformation"]
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            return data["x"].astype(np.float32), data["y"].astype(np.float32)
    if training["dataType"] == "text":
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{path} holds no .txt file.")
        return text_windows("\n".join(f.read_text(encoding="utf-8") for f in files), training)
    if path.is_dir():
        return images_from_folder(path, training)
    if training["dataType"] == "tabular":
        return tabular_from_csv(path.read_text(encoding="utf-8"), training)
    raise DataError(f"{path}: give a CSV (tabular tasks), an image folder (image tasks) or an .npz with x and y.")


def data_from_files(files: dict[str, bytes], task: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """(x, y) from files given by name and content: a tabular task's CSV, a text task's .txt files, or images
    named as an image folder holds them (e.g. the server's generated sample data, ``manage.py simulate``)."""
    import tempfile

    training = task["trainingInformation"]
    if training["dataType"] == "tabular":
        (text,) = [data.decode() for name, data in files.items() if name.endswith(".csv")]
        return tabular_from_csv(text, training)
    if training["dataType"] == "text":
        return text_windows("\n".join(data.decode() for name, data in sorted(files.items())
                                       if name.endswith(".txt")), training)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return images_from_folder(Path(tmp), training)


PARTITIONS = "iid, shards:S or dirichlet:ALPHA"


def parse_partition(text: str) -> tuple[str, float]:
    """``iid`` -> ("iid", 0); ``shards:S`` -> ("shards", S), S a whole number >= 1;
    ``dirichlet:ALPHA`` -> ("dirichlet", ALPHA), ALPHA > 0."""
    kind, _, value = text.strip().partition(":")
    try:
        if kind == "iid" and not value:
            return "iid", 0.0
        if kind == "shards" and int(value) >= 1 and str(int(value)) == value:
            return "shards", float(int(value))
        if kind == "dirichlet" and float(value) > 0 and np.isfinite(float(value)):
            return "dirichlet", float(value)
    except ValueError:
        pass
    raise DataError(f"Unknown partition {text!r}: give {PARTITIONS} (S a whole number >= 1, ALPHA > 0).")


def labels_of(y: np.ndarray) -> np.ndarray:
    """One integer class per sample: the index of a one-hot row, else the (rounded) first output column."""
    flat = np.asarray(y).reshape(len(y), -1)
    return flat.argmax(axis=1) if flat.shape[1] > 1 else np.rint(flat[:, 0]).astype(np.int64)


def split(x: np.ndarray, y: np.ndarray, parts: int, *, partition: str = "iid", non_iid: bool = False,
          seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split (x, y) among ``parts`` participants as ``partition`` says (seeded; see ``partition_indices``).

    ``non_iid`` is the old option: label-sorted slices, one per participant, i.e. ``shards:1``.
    """
    partition = "shards:1" if non_iid else partition
    if isinstance(x, dict) and parse_partition(partition)[0] != "iid":
        raise DataError(f"Text tasks are split iid: {partition} deals out labels, and a text window has none.")
    return [(take(x, idx), y[idx]) for idx in partition_indices(y, parts, partition, seed=seed)]


def partition_indices(y: np.ndarray, parts: int, partition: str = "iid", *, seed: int = 0) -> list[np.ndarray]:
    """Which samples each of ``parts`` participants holds.

    - ``iid``: a seeded shuffle cut into equal parts.
    - ``shards:S`` (McMahan et al., AISTATS 2017): samples sorted by label (ties in a seeded random order),
      cut into parts * S equal shards, S random shards per participant; ``shards:1`` gives each
      participant one label-sorted slice (with 10 participants and 10 labels, about one label each).
    - ``dirichlet:ALPHA`` (Hsu, Qi & Brown 2019): each label's samples shared among the participants in
      proportions drawn from Dirichlet(ALPHA, ..., ALPHA); small ALPHA, few labels each. Drawn again
      (up to 100 times) until every participant holds at least one sample.
    """
    kind, value = parse_partition(partition)
    n = len(y)
    if parts < 1 or n < parts:
        raise DataError(f"Cannot split {n} samples among {parts} participants.")
    rng = np.random.default_rng(seed)
    if kind == "iid":
        return list(np.array_split(rng.permutation(n), parts))
    labels = labels_of(y)
    if kind == "shards":
        per = int(value)
        if n < parts * per:
            raise DataError(f"Cannot cut {n} samples into {parts} x {per} shards.")
        shuffled = rng.permutation(n)
        order = shuffled[np.argsort(labels[shuffled], kind="stable")]
        shards = np.array_split(order, parts * per)
        owners = rng.permutation(parts * per)
        return [np.sort(np.concatenate([shards[s] for s in owners[i * per:(i + 1) * per]])) for i in range(parts)]
    classes = np.unique(labels)
    for _ in range(100):
        owned: list[list[np.ndarray]] = [[] for _ in range(parts)]
        for c in classes:
            members = rng.permutation(np.flatnonzero(labels == c))
            proportions = rng.dirichlet(np.full(parts, value))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int)
            for i, chunk in enumerate(np.split(members, cuts)):
                owned[i].append(chunk)
        result = [np.sort(np.concatenate(chunks)) for chunks in owned]
        if all(len(r) for r in result):
            return result
    raise DataError(f"dirichlet:{value:g} left a participant without data in 100 draws; use a larger ALPHA "
                    f"or fewer participants.")
