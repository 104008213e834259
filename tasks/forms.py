"""The contributors' task form: every task setting, in plain words, turned into spec values.

The form only parses what people type (numbers, lists one per line, the aggregator's
parameters as separate fields, privacy as a checkbox); the rules themselves live in
``tasks.validation`` and are applied by ``tasks.creation``, whose ``{field: [messages]}``
errors ``TaskForm.add_service_errors`` puts under the matching inputs.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings
from django.utils.safestring import mark_safe

from aggregation.aggregators.registry import AGGREGATORS, SERVER_OPTIMIZERS, Param, field_names, registry_json

from .choices import Aggregator, Compression, DataType, Participation, Scheme, ServerOptimizer, Tokenizer
from .models import Task
from .preprocessing import preprocessing_steps
from .spec import SPEC_FIELDS

# The registry's families of choices with parameters: (choice field, parameters' spec field, form field prefix,
# entries). Each parameter is a form field named by ``registry.field_names`` (``agg_beta``, ``opt_momentum``).
FAMILIES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("aggregator", "aggregator_params", "agg", AGGREGATORS),
    ("server_optimizer", "server_optimizer_params", "opt", SERVER_OPTIMIZERS),
)
PARAM_FIELDS: dict[str, dict[tuple[str, str], str]] = {choice: field_names(entries, prefix)
                                                       for choice, _, prefix, entries in FAMILIES}
DEFAULT_CLIPPING_RADIUS = 1.0
DEFAULT_NOISE_SCALE = 1.0
MODEL_ACCEPT = ".json,.bin,.zip,.h5,.keras"

_LIST_SPLIT = re.compile(r"[\n,]")


def parse_list(text: str) -> list[str]:
    """Names written one per line or comma-separated; blanks dropped."""
    return [item.strip() for item in _LIST_SPLIT.split(text or "") if item.strip()]


class ListField(forms.CharField):
    """A list of names typed in a textarea, one per line or separated by commas."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(map(str, value)) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return [str(v) for v in value]
        return parse_list(super().to_python(value))


class ExampleField(forms.CharField):
    """DISCO's data example (``[{"columnName", "columnData"}]``) written as ``name: value`` lines."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(f"{row.get('columnName', '')}: {row.get('columnData', '')}"
                             for row in value if isinstance(row, dict))
        return value

    def to_python(self, value: Any) -> list[dict[str, str]]:
        if isinstance(value, list):
            return value
        rows = []
        for number, line in enumerate((super().to_python(value) or "").splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, data = line.partition(":")
            if not sep or not name.strip():
                raise forms.ValidationError(f"Line {number} needs a column name, a colon and a value, e.g. 'Age: 22'.")
            rows.append({"columnName": name.strip(), "columnData": data.strip()})
        return rows


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class ModelFilesField(forms.FileField):
    """Several files from one ``<input type=file multiple>``; their total size is checked before reading."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": MODEL_ACCEPT, "multiple": True}))
        super().__init__(**kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        files = [f for f in (data if isinstance(data, (list, tuple)) else [data]) if f]
        cleaned = [super(ModelFilesField, self).clean(f, initial) for f in files]
        names = [f.name for f in cleaned]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise forms.ValidationError(f"Two selected files have the same name: {', '.join(duplicates)}.")
        total, limit = sum(f.size for f in cleaned), int(settings.DISCO_MAX_MODEL_BYTES)
        if total > limit:
            from .creation import too_large_message

            raise forms.ValidationError(too_large_message(total))
        return cleaned


def _int(label: str, help_text: str = "", **kwargs: Any) -> forms.IntegerField:
    return forms.IntegerField(label=label, help_text=help_text, required=False, min_value=None, **kwargs)


def _float(label: str, help_text: str = "", **kwargs: Any) -> forms.FloatField:
    return forms.FloatField(label=label, help_text=help_text, required=False, **kwargs)


def param_field(param: Param) -> forms.Field:
    """The form field of a registry parameter; its bounds are the service's to check (one message for all)."""
    build = _int if param.type == "int" else _float
    return build(param.label, f"{param.help} Accepted: {param.range_text()}.".strip(),
                 initial=param.coerce(param.default))


def _text(label: str, help_text: str = "", rows: int = 3, **kwargs: Any) -> forms.CharField:
    return forms.CharField(label=label, help_text=help_text, required=False,
                           widget=forms.Textarea(attrs={"rows": rows}), **kwargs)


class TaskForm(forms.Form):
    """Every setting of a task, grouped as the template shows them."""

    # General
    id = forms.CharField(label="Task id", required=False, max_length=64,
                         help_text=mark_safe("A short name for links, e.g. <code>heart-disease</code>: lower-case "
                                             "letters, digits, '-' and '_'. It cannot change later."))
    title = forms.CharField(label="Title", required=False, max_length=200)
    summary_preview = forms.CharField(label="One-line summary", required=False, max_length=500,
                                      help_text="Shown on the task's card in the catalogue.")
    scheme = forms.ChoiceField(label="How participants collaborate", choices=Scheme.choices, initial=Scheme.FEDERATED,
                               help_text="Federated: the server combines everyone's updates. Decentralized: "
                                         "participants exchange updates directly. Local: each trains alone.")
    participation = forms.ChoiceField(
        label="Who may take part", choices=Participation.choices, initial=Participation.OPEN, required=False,
        help_text="Anyone with the link; anyone signed in to an account; or only people you send an invitation "
                  "link to (shown on the task's page, where you can also replace it).")
    data_type = forms.ChoiceField(label="Data type", choices=DataType.choices, initial=DataType.TABULAR,
                                  help_text="What participants train on: images, rows of a CSV file, or text.")
    # Description
    summary_overview = _text("Overview", "What the task is about and why it matters. Plain text (a blank line "
                                         "starts a paragraph) or simple HTML: paragraphs, bold, italics, lists, "
                                         "code, tables and http(s) links; anything else (scripts, styles, images, "
                                         "event attributes) is removed.", rows=4)
    model_description = _text("About the model", "Its architecture, in a few words. Plain text or the same simple "
                                                 "HTML as the overview.")
    data_format = _text("Data format", "What data a participant connects, and how it is organised.")
    data_example_text = forms.CharField(label="Example caption", required=False,
                                        help_text="A sentence introducing the example below.")
    data_example = ExampleField(label="Example row", required=False,
                                help_text=mark_safe("One column per line as <code>name: value</code>, e.g. "
                                                    "<code>Age: 22</code>."))
    data_example_image = forms.CharField(label="Example image address", required=False, max_length=500,
                                         widget=forms.URLInput,
                                         help_text="Link to a picture of typical data (optional), starting with "
                                                   "https:// or http://.")
    sample_dataset_link = forms.CharField(label="Sample dataset link", required=False, max_length=500,
                                          widget=forms.URLInput,
                                          help_text="Where participants find sample data (optional), starting "
                                                    "with https:// or http://.")
    sample_dataset_instructions = _text("Sample dataset instructions",
                                        "How to get and connect the sample data.")
    # Data
    image_height = _int("Image height (pixels)", "Images are resized to this height.")
    image_width = _int("Image width (pixels)", "Images are resized to this width.")
    image_channels = forms.TypedChoiceField(label="Colour channels", required=False, coerce=int, empty_value=None,
                                            choices=[(3, "3: colour (RGB)"), (1, "1: greyscale"),
                                                     (4, "4: colour with transparency (RGBA)")], initial=3)
    labels = ListField(label="Labels", required=False,
                       help_text="The classes the model predicts, one per line or separated by commas, in the "
                                 "order of the model's outputs.")
    input_columns = ListField(label="Input columns", required=False,
                              help_text="The CSV columns the model reads, one per line or comma-separated.")
    output_columns = ListField(label="Output columns", required=False,
                               help_text="The CSV column(s) the model predicts.")
    tokenizer = forms.ChoiceField(label="Tokenizer", required=False, choices=Tokenizer.choices,
                                  initial=Tokenizer.BYTES,
                                  help_text="How text is cut into tokens; it ships with the platform.")
    max_sequence_length = _int("Maximum sequence length", "Tokens per training example (at least 2).")
    # Training
    epochs = _int("Epochs", "How many passes over their data each participant makes in total.", initial=10)
    round_duration = _int("Epochs per round", "How many epochs a participant trains between two exchanges of "
                                              "updates. Epochs must be a multiple of it.", initial=2)
    batch_size = _int("Batch size", "Examples per training step; 16 to 64 suits most tasks.", initial=32)
    validation_split = _float("Validation share", "The fraction of each participant's data kept aside to "
                                                  "measure accuracy, e.g. 0.2 for 20%.", initial=0.2)
    min_participants = _int("Minimum participants", "A round waits for this many people.", initial=2)
    round_deadline_seconds = _int("Round deadline (seconds)", "Once the minimum number of participants has sent "
                                                              "an update, a round closes after this many seconds "
                                                              "without waiting for slower ones.", initial=120)
    # Aggregation
    aggregator = forms.ChoiceField(label="How updates are combined", choices=Aggregator.choices,
                                   initial=Aggregator.MEAN,
                                   help_text="The mean suits trusted participants. The median, trimmed mean, "
                                             "Krum and centered clipping resist a few faulty or malicious ones.")
    # The parameters of every aggregator and server optimizer are added by __init__, from the registry.
    server_optimizer = forms.ChoiceField(
        label="Server optimizer", choices=ServerOptimizer.choices, initial=ServerOptimizer.NONE, required=False,
        help_text="Federated tasks: after each round the server can step from the round's model along the "
                  "change the participants agreed on, with momentum (FedAvgM) or adaptively (FedAdam). None: the "
                  "aggregate becomes the new model.")
    allow_relay = forms.BooleanField(
        label="Allow the server to pass peers' encrypted/opaque messages along when they cannot connect directly",
        required=False, initial=True,
        help_text="Decentralized tasks: peers normally exchange updates directly. When two of them cannot connect "
                  "(a strict firewall, for example), the server forwards their messages without reading or storing "
                  "them. Untick to forbid this; such peers then leave the round.")
    max_samples_per_update = _int("Largest sample count an update may claim",
                                  "Federated rounds weigh updates by their sample counts; a larger claim is "
                                  "lowered to this.", initial=100_000)
    max_contribution_share = _float("Largest share of a round one update may get",
                                    "From just above 0 to 1: 0.25 means no update counts for more than a quarter "
                                    "of the average (1 lifts the cap).", initial=0.25)
    max_update_norm = _float("Largest update size (L2 norm)", "Federated rounds refuse updates that move the model "
                                                             "further than this from the round's start. Empty: "
                                                             "no bound.")
    compression = forms.ChoiceField(
        label="Update compression", choices=Compression.choices, initial=Compression.FLOAT32, required=False,
        help_text="Federated rounds: participants send their updates this way. 16-bit floats halve the bytes, "
                  "8-bit integers quarter them, each a little less precisely.")
    participants_per_round = _int("Participants per round", "Federated rounds: invite this many of the connected "
                                                            "participants to each round, chosen at random, those "
                                                            "who waited longest first; the others train locally "
                                                            "until invited. Empty: everyone, every round.")
    max_share_value = _float("Largest shared value", "Secure aggregation: updates are encoded within ± this "
                                                     "value; 100 is safe for most models.", initial=100.0)
    # Privacy
    dp_enabled = forms.BooleanField(label="Protect each update with differential privacy", required=False,
                                    help_text="Before an update leaves a participant's device, its size is "
                                              "limited and random noise is added, so that nobody can tell "
                                              "whether one particular person's data was used. More noise means "
                                              "more privacy and a slightly less accurate model.")
    clipping_radius = _float("Update size limit (clipping radius)", "Each update is scaled down to at most this "
                                                                    "length. 1.0 is a safe start.",
                             initial=DEFAULT_CLIPPING_RADIUS)
    noise_scale = _float("Noise amount (noise multiplier)", "Noise added, relative to the size limit. 1.0 gives "
                                                            "good privacy; 0 adds none.", initial=DEFAULT_NOISE_SCALE)
    # Model
    model_files = ModelFilesField(label="Model files", required=False)
    random_init = forms.BooleanField(label="My model.json has no weights: initialise them randomly", required=False)

    def __init__(self, *args: Any, task: Task | None = None, **kwargs: Any):
        self.task = task
        if task is not None and "initial" not in kwargs:
            kwargs["initial"] = initial_from_task(task)
        super().__init__(*args, **kwargs)
        for data_type in DataType.values:
            steps = preprocessing_steps(data_type)
            self.fields[f"preprocessing_{data_type}"] = forms.MultipleChoiceField(
                label="Preprocessing", required=False, widget=forms.CheckboxSelectMultiple,
                choices=list(steps.items()))
        for choice, _, _, entries in FAMILIES:
            for (entry, param), name in PARAM_FIELDS[choice].items():
                if name not in self.fields:
                    self.fields[name] = param_field(entries[entry].param(param))
        if task is not None:
            self.fields["id"].disabled = True
            self.fields["model_files"].help_text = "Leave empty to keep the current model; a new model becomes a " \
                                                   "new version (earlier versions are kept)."

    # --- reading -------------------------------------------------------------------------
    def preprocessing_field(self) -> forms.BoundField:
        return self[f"preprocessing_{self._value('data_type') or DataType.TABULAR}"]

    def preprocessing_fields(self) -> list[tuple[str, str, forms.BoundField]]:
        return [(value, label, self[f"preprocessing_{value}"]) for value, label in DataType.choices]

    def param_fields(self, choice: str) -> list[forms.BoundField]:
        """The parameters' fields of ``choice`` ("aggregator" or "server_optimizer"), each once."""
        return [self[name] for name in dict.fromkeys(PARAM_FIELDS[choice].values())]

    def aggregator_param_fields(self) -> list[forms.BoundField]:
        return self.param_fields("aggregator")

    def server_optimizer_param_fields(self) -> list[forms.BoundField]:
        return self.param_fields("server_optimizer")

    def registry_json(self) -> dict[str, Any]:
        """The registry as the page's script reads it, with the form field of every parameter."""
        data = registry_json()
        for key, choice in (("aggregators", "aggregator"), ("serverOptimizers", "server_optimizer")):
            for entry in data[key]:
                for param in entry["params"]:
                    param["field"] = PARAM_FIELDS[choice][entry["name"], param["name"]]
        return data

    def _value(self, name: str) -> Any:
        if hasattr(self, "cleaned_data") and name in self.cleaned_data:
            return self.cleaned_data[name]
        return self[name].value()

    def spec_values(self) -> dict[str, Any]:
        """The task settings the form holds (fields that failed to parse are left out)."""
        data = dict(getattr(self, "cleaned_data", {}))
        if self.task is not None:
            data["id"] = self.task.pk
        data_type = data.get("data_type")
        # Privacy fields are read below, from the checkbox.
        names = [n for n in SPEC_FIELDS if n in self.fields and n not in ("clipping_radius", "noise_scale")]
        values = {name: data[name] for name in names if name in data}
        for name in ("title", "summary_preview"):
            if isinstance(values.get(name), str):
                values[name] = values[name].strip()
        # Left empty (or absent from an older form): keep the task's setting, or the default.
        for name in ("participation", "max_samples_per_update", "max_contribution_share", "compression",
                     "server_optimizer"):
            if values.get(name) in (None, ""):
                values.pop(name, None)
        # Sampling is hidden in the form for the other schemes (which refuse it): drop it rather than keep it.
        if data.get("scheme") not in (None, "", Scheme.FEDERATED):
            values["participants_per_round"] = None
        # Settings of the other data types are hidden in the form: drop them rather than keep stale values.
        if data_type != DataType.IMAGE:
            values.update(image_height=None, image_width=None, image_channels=None)
        if data_type != DataType.TABULAR:
            values.update(input_columns=[], output_columns=[])
        if data_type == DataType.TEXT:
            values["labels"] = []
        else:
            values.update(tokenizer="", max_sequence_length=None)
        if f"preprocessing_{data_type}" in data:
            chosen = set(data[f"preprocessing_{data_type}"])
            values["preprocessing"] = [s for s in preprocessing_steps(str(data_type)) if s in chosen]
        for choice, params_name, _, entries in FAMILIES:
            chosen = values.get(choice)
            if chosen not in entries:
                continue
            fields = {p.name: PARAM_FIELDS[choice][chosen, p.name] for p in entries[chosen].params}
            if all(f in data for f in fields.values()):
                values[params_name] = {p: data[f] for p, f in fields.items() if data[f] is not None}
        if "dp_enabled" in data:
            if data["dp_enabled"]:
                for name in ("clipping_radius", "noise_scale"):
                    if name in data:
                        values[name] = data[name]
            else:
                values.update(clipping_radius=None, noise_scale=None)
        return values

    def model_file_bytes(self) -> dict[str, bytes]:
        """The uploaded files by name, read into memory (their total size was checked first)."""
        files = getattr(self, "cleaned_data", {}).get("model_files") or []
        out = {}
        for uploaded in files:
            uploaded.seek(0)
            out[uploaded.name] = uploaded.read()
        return out

    # --- errors from the service ---------------------------------------------------------
    def form_field_for(self, name: str, message: str) -> str:
        """The form field that shows a service error about spec field ``name``."""
        if name == "model":
            return "model_files"
        if name == "preprocessing":
            return f"preprocessing_{self._value('data_type')}"
        for choice, params_name, _, _ in FAMILIES:
            if name == params_name:
                chosen = self._value(choice) or (ServerOptimizer.NONE if choice == "server_optimizer" else "")
                fields = {p: f for (entry, p), f in PARAM_FIELDS[choice].items() if entry == chosen}
                match = re.search(r"needs (\w+)", message)
                if match and match.group(1) in fields:
                    return fields[match.group(1)]
                return next(iter(fields.values()), choice)
        return name if name in self.fields else "id"

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        """Show ``{spec field: [messages]}`` under the inputs, except where parsing already failed."""
        failed = set(self.errors)
        for name, messages in errors.items():
            for message in messages:
                target = self.form_field_for(name, message)
                if target in failed and target not in ("model_files",):
                    continue
                self.add_error(target, message)


def initial_from_task(task: Task) -> dict[str, Any]:
    """The form's initial values for editing ``task``."""
    initial: dict[str, Any] = task.spec_values()
    initial[f"preprocessing_{task.data_type}"] = list(task.preprocessing)
    for choice, params_name, _, _ in FAMILIES:
        for name, value in (getattr(task, params_name) or {}).items():
            field = PARAM_FIELDS[choice].get((getattr(task, choice), name))
            if field:
                initial[field] = value
    initial["dp_enabled"] = task.clipping_radius is not None
    if task.clipping_radius is None:
        initial.update(clipping_radius=DEFAULT_CLIPPING_RADIUS, noise_scale=DEFAULT_NOISE_SCALE)
    return initial
