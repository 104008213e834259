"""The rules a task's settings obey, written once.

``validate_task_fields`` reports every problem at once, keyed by field name, so a
form, the admin, the API and ``load_default_tasks`` all say the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aggregation.aggregators.registry import AGGREGATORS, NO_SERVER_OPTIMIZER, SERVER_OPTIMIZERS
from aggregation.aggregators.requirements import participant_problems

from .choices import Compression, DataType, Participation, Scheme, Tokenizer
from .preprocessing import preprocessing_steps

TASK_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_IMAGE_SIDE = 1024
# Task fields holding a web address that pages and clients follow or load.
URL_FIELDS: dict[str, str] = {"sample_dataset_link": "The sample dataset link",
                              "data_example_image": "The example image address"}
WEB_URL_SCHEMES = ("http", "https")
# Browsers ignore tabs, newlines and leading control characters in a URL ("java\tscript:" runs).
_URL_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\\]")

Errors = dict[str, list[str]]


def validate_task_fields(values: Mapping[str, Any]) -> Errors:
    """Check a task's settings; return ``{field: [messages]}``, empty when all is well."""
    errors: Errors = {}

    def err(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    _check_identity(values, err)
    _check_links(values, err)
    _check_training(values, err)
    data_type = values.get("data_type")
    if data_type == DataType.IMAGE:
        _check_image(values, err)
    elif data_type == DataType.TABULAR:
        _check_tabular(values, err)
    elif data_type == DataType.TEXT:
        _check_text(values, err)
    _check_preprocessing(values, err)
    _check_privacy(values, err)
    _check_aggregator(values, err)
    _check_server_optimizer(values, err)
    _check_participation(values, err)
    return errors


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_identity(values: Mapping[str, Any], err) -> None:
    task_id = values.get("id") or ""
    if not TASK_ID_RE.match(str(task_id)):
        err("id", "Use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit.")
    if not str(values.get("title") or "").strip():
        err("title", "Give the task a title.")
    if not str(values.get("summary_preview") or "").strip():
        err("summary_preview", "Write a one-line preview shown on the task card.")


def is_web_url(value: Any) -> bool:
    """Whether ``value`` is an absolute http(s) address with a host, and nothing a browser could run."""
    if not isinstance(value, str) or not value or _URL_FORBIDDEN_CHARS.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in WEB_URL_SCHEMES and bool(parts.hostname)


def url_problem(label: str, value: Any) -> str | None:
    """Why ``value`` cannot be a task's web address (``label`` names the field), or ``None`` when it can."""
    if value in (None, ""):
        return None
    if is_web_url(value):
        return None
    text = str(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    scheme = text.split(":", 1)[0].strip().lower() if ":" in text else ""
    if scheme and scheme.isascii() and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum() \
            and scheme not in WEB_URL_SCHEMES:
        why = f"'{scheme}:' addresses are not allowed"
    elif _URL_FORBIDDEN_CHARS.search(text):
        why = "it contains spaces, control characters or backslashes"
    else:
        why = "it is not a complete web address"
    return (f"{label} must be a web address starting with http:// or https:// ({why}: {shown!r}). "
            "Paste the full address of the page, e.g. https://example.org/data, or leave it empty.")


def _check_links(values: Mapping[str, Any], err) -> None:
    for name, label in URL_FIELDS.items():
        problem = url_problem(label, values.get(name))
        if problem:
            err(name, problem)


def _check_training(values: Mapping[str, Any], err) -> None:
    epochs, round_duration = values.get("epochs"), values.get("round_duration")
    if not _positive_int(epochs):
        err("epochs", "Epochs must be a whole number of at least 1.")
    if not _positive_int(round_duration):
        err("round_duration", "Round duration must be a whole number of epochs, at least 1.")
    if _positive_int(epochs) and _positive_int(round_duration) and epochs % round_duration:
        err(
            "round_duration",
            f"Epochs ({epochs}) must be a multiple of the round duration ({round_duration}) "
            "so that training ends on a round boundary.",
        )
    if not _positive_int(values.get("batch_size")):
        err("batch_size", "Batch size must be a whole number of at least 1.")
    split = values.get("validation_split")
    if not isinstance(split, (int, float)) or isinstance(split, bool) or not 0 < split < 1:
        err("validation_split", "Validation split is a fraction strictly between 0 and 1, e.g. 0.2.")
    if values.get("scheme") not in Scheme.values:
        err("scheme", f"Scheme must be one of: {', '.join(Scheme.values)}.")
    if values.get("data_type") not in DataType.values:
        err("data_type", f"Data type must be one of: {', '.join(DataType.values)}.")
    deadline = values.get("round_deadline_seconds")
    if not _positive_int(deadline) or deadline < 5:
        err("round_deadline_seconds", "The round deadline is a whole number of seconds, at least 5.")
    if not _positive_int(values.get("min_participants")):
        err("min_participants", "The minimum number of participants is a whole number of at least 1.")
    if not isinstance(values.get("allow_relay", True), bool):
        err("allow_relay", "Allowing the relay is true or false.")


def _check_image(values: Mapping[str, Any], err) -> None:
    for name, label in (("image_height", "height"), ("image_width", "width")):
        side = values.get(name)
        if not _positive_int(side) or side > MAX_IMAGE_SIDE:
            err(name, f"Image tasks need an image {label} in pixels, from 1 to {MAX_IMAGE_SIDE}.")
    channels = values.get("image_channels")
    if channels is not None and channels not in (1, 3, 4):
        err("image_channels", "Images have 1 (grey), 3 (RGB) or 4 (RGBA) channels.")
    _check_labels(values, err, required=True)


def _check_labels(values: Mapping[str, Any], err, *, required: bool) -> None:
    labels = values.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
        err("labels", "Labels are a list of non-empty names.")
        return
    if required and len(labels) < 2:
        err("labels", "Classification needs at least two labels.")
    if len(set(labels)) != len(labels):
        err("labels", "Each label may appear only once.")


def _check_columns(values: Mapping[str, Any], name: str, what: str, err) -> list[str]:
    columns = values.get(name) or []
    if not isinstance(columns, list) or not all(isinstance(c, str) and c.strip() for c in columns):
        err(name, f"{what} columns are a list of non-empty column names.")
        return []
    if not columns:
        err(name, f"Tabular tasks need at least one {what.lower()} column.")
    if len(set(columns)) != len(columns):
        err(name, f"Each {what.lower()} column may appear only once.")
    return columns


def _check_tabular(values: Mapping[str, Any], err) -> None:
    inputs = _check_columns(values, "input_columns", "Input", err)
    outputs = _check_columns(values, "output_columns", "Output", err)
    both = sorted(set(inputs) & set(outputs))
    if both:
        err("output_columns", f"A column cannot be both input and output: {', '.join(both)}.")
    _check_labels(values, err, required=False)


def _check_text(values: Mapping[str, Any], err) -> None:
    if values.get("tokenizer") not in Tokenizer.values:
        err("tokenizer", f"Text tasks need a tokenizer that ships with the project: {', '.join(Tokenizer.values)}.")
    length = values.get("max_sequence_length")
    if not _positive_int(length) or length < 2:
        err("max_sequence_length", "Text tasks need a maximum sequence length of at least 2 tokens.")


def _check_preprocessing(values: Mapping[str, Any], err) -> None:
    steps = values.get("preprocessing") or []
    if not isinstance(steps, list):
        err("preprocessing", "Preprocessing is a list of step names.")
        return
    known = preprocessing_steps(str(values.get("data_type")))
    unknown = [s for s in steps if s not in known]
    if unknown:
        err(
            "preprocessing",
            f"Unknown preprocessing for {values.get('data_type')} data: {', '.join(map(str, unknown))}. "
            f"Known steps: {', '.join(known) or 'none'}.",
        )


def _check_privacy(values: Mapping[str, Any], err) -> None:
    clip, noise = values.get("clipping_radius"), values.get("noise_scale")
    if (clip is None) != (noise is None):
        err("noise_scale" if clip is not None else "clipping_radius",
            "Differential privacy needs both a clipping radius and a noise scale (or neither).")
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        err("clipping_radius", "The clipping radius is a positive number (the largest L2 norm an update keeps).")
    if noise is not None and not (isinstance(noise, (int, float)) and noise >= 0):
        err("noise_scale", "The noise scale (noise multiplier) is zero or a positive number.")
    share = values.get("max_share_value")
    if not isinstance(share, (int, float)) or isinstance(share, bool) or share <= 0:
        err("max_share_value", "The maximum share value for secure aggregation is a positive number.")


def _check_aggregator(values: Mapping[str, Any], err) -> None:
    """The aggregator and its parameters, as the registry describes them, and whether they can work with
    the task's scheme and minimum number of participants."""
    name = values.get("aggregator")
    params = values.get("aggregator_params") or {}
    spec = AGGREGATORS.get(name) if isinstance(name, str) else None
    if spec is None:
        err("aggregator", f"Aggregator must be one of: {', '.join(AGGREGATORS)}.")
        return
    problems = spec.problems(params)
    for message in problems:
        err("aggregator_params", message)
    scheme = values.get("scheme")
    if scheme == Scheme.DECENTRALIZED and scheme not in spec.schemes:
        peers = " or ".join(a.label for a in AGGREGATORS.values() if scheme in a.schemes)
        err("aggregator", f"{spec.label} cannot run in a decentralized task: the peers aggregate among themselves "
            f"with {peers}; {spec.label} needs every update in one place, which only the federated scheme's "
            f"server has. Choose the federated scheme to use {spec.label}, or one of the peers' rules.")
    elif scheme in Scheme.values and scheme not in spec.schemes:
        where = " or ".join(spec.schemes)
        err("aggregator", f"{spec.label} runs only in {where} tasks: choose that scheme, or another aggregator.")
    min_participants = values.get("min_participants")
    if _positive_int(min_participants) and isinstance(params, dict):
        for field_name, message in participant_problems(name, params, min_participants):
            err(field_name, message)


def _check_server_optimizer(values: Mapping[str, Any], err) -> None:
    """The server optimizer and its parameters (federated tasks only: nothing else has a server step)."""
    name = values.get("server_optimizer", NO_SERVER_OPTIMIZER)
    params = values.get("server_optimizer_params") or {}
    spec = SERVER_OPTIMIZERS.get(name) if isinstance(name, str) else None
    if spec is None:
        err("server_optimizer", f"The server optimizer must be one of: {', '.join(SERVER_OPTIMIZERS)}.")
        return
    for message in spec.problems(params):
        err("server_optimizer_params", message)
    if name != NO_SERVER_OPTIMIZER and values.get("scheme") in (Scheme.DECENTRALIZED, Scheme.LOCAL):
        err("server_optimizer", f"{spec.label.split(' (')[0]} is a step the server takes after a federated round; "
            f"{values.get('scheme')} tasks have no server step. Choose the federated scheme, or no server "
            "optimizer.")


def _check_participation(values: Mapping[str, Any], err) -> None:
    if values.get("participation", Participation.OPEN) not in Participation.values:
        err("participation", f"Participation must be one of: {', '.join(Participation.values)} "
            "(anyone with the link, anyone signed in, or only people with an invitation link).")
    if not _positive_int(values.get("max_samples_per_update", 1)):
        err("max_samples_per_update", "The largest sample count an update may claim is a whole number of at least 1.")
    share = values.get("max_contribution_share", 1.0)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        err("max_contribution_share", "The largest share of a round's weight one update may get is a number in "
            "(0, 1], e.g. 0.25; 1 means no cap.")
    norm = values.get("max_update_norm")
    if norm is not None and (isinstance(norm, bool) or not isinstance(norm, (int, float)) or not norm > 0
                             or norm != norm or norm == float("inf")):
        err("max_update_norm", "The update norm bound is a positive number (the largest L2 distance an update may "
            "have from the round's base model), or empty for no bound.")
    compression = values.get("compression", Compression.FLOAT32)
    if compression not in Compression.values:
        err("compression", f"Compression must be one of: {', '.join(Compression.values)} (float32 sends updates "
            "exactly; float16 and int8 send half and a quarter of the bytes, less precisely).")
    elif compression != Compression.FLOAT32 and values.get("scheme") != Scheme.FEDERATED:
        err("compression", "Compression applies to federated rounds, where participants send updates to the "
            "server; decentralized peers exchange them exactly. Choose float32, or the federated scheme.")
    _check_sampling(values, err)


def _check_sampling(values: Mapping[str, Any], err) -> None:
    """Participants per round: federated only, at least 1, and never below the minimum number of participants
    (a round takes updates only from those it invited, so fewer invitations than the minimum never close it)."""
    per_round = values.get("participants_per_round")
    if per_round is None:
        return
    if not _positive_int(per_round):
        err("participants_per_round", "Participants per round is a whole number of at least 1, or empty to invite "
            "every connected participant to every round.")
    elif values.get("scheme") != Scheme.FEDERATED:
        err("participants_per_round", "Participants per round applies to federated rounds, where the server invites "
            "who sends an update; in decentralized and local tasks there is no server round to invite to. Leave it "
            "empty, or choose the federated scheme.")
    elif _positive_int(values.get("min_participants")) and per_round < values["min_participants"]:
        err("participants_per_round", f"Participants per round ({per_round}) is below the minimum number of "
            f"participants ({values['min_participants']}): a round takes updates only from those it invited, so "
            f"it could never close. Invite at least {values['min_participants']} per round, or lower the minimum.")
