"""The HTML pages: home, task catalogue (with filters) and task detail."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, Template
from django.test import Client, RequestFactory

from tasks.models import ConversionJob, ModelVersion, Task


def make_tabular(task_id: str = "titanic", **extra) -> Task:
    fields = dict(
        id=task_id, title="Titanic Prediction", summary_preview="Predict who survived.", data_type="tabular",
        input_columns=["a"], output_columns=["b"], scheme="federated", published=True,
    )
    fields.update(extra)
    return Task.objects.create(**fields)


def make_image(task_id: str = "mnist", **extra) -> Task:
    fields = dict(
        id=task_id, title="MNIST Digits", summary_preview="Recognise handwritten digits.", data_type="image",
        image_height=28, image_width=28, image_channels=1, labels=["zero", "one"], scheme="decentralized",
        published=True,
    )
    fields.update(extra)
    return Task.objects.create(**fields)


def make_text(task_id: str = "wikitext", **extra) -> Task:
    fields = dict(
        id=task_id, title="WikiText", summary_preview="A small language model.", data_type="text",
        tokenizer="bytes", max_sequence_length=64, scheme="local", published=True,
    )
    fields.update(extra)
    return Task.objects.create(**fields)


def add_version(task: Task, number: int = 1, parameter_count: int = 1234567,
                total_bytes: int = 4938268) -> ModelVersion:
    version = ModelVersion.objects.create(
        task=task, number=number, origin="initial", sha256="0" * 64, storage_dir=f"models/{task.id}/{number}",
        files=[{"name": "model.json", "size": 10, "sha256": "0" * 64}], weight_specs=[],
        parameter_count=parameter_count, total_bytes=total_bytes,
    )
    task.current_version = version
    task.save()
    return version


@pytest.fixture
def staff_client(db):
    """A second client, logged in as a staff user (the ``client`` fixture stays anonymous)."""
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("boss", password="pw-12345", is_staff=True))
    return staff


# --- Home ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_home_shows_counts_links_and_featured_tasks(client):
    make_tabular()
    make_image()
    make_text()
    make_tabular("hidden", title="Secret Draft", published=False)
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["task_count"] == 3
    assert "All 3 tasks" in html
    assert 'href="/tasks/"' in html
    assert 'href="/api/tasks/"' in html
    assert "never leaves" in html
    for title, url in (("Titanic Prediction", "/tasks/titanic/"), ("MNIST Digits", "/tasks/mnist/"),
                       ("WikiText", "/tasks/wikitext/")):
        assert title in html
        assert f'href="{url}"' in html
    assert "Secret Draft" not in html
    assert "vendor/pico/pico.min.css" in html
    assert "disco/site.css" in html


@pytest.mark.django_db
def test_home_features_at_most_three_tasks(client):
    for i in range(5):
        make_tabular(f"t{i}", title=f"Task number {i}")
    html = client.get("/").content.decode()
    assert sum(f"Task number {i}" in html for i in range(5)) == 3
    assert "All 5 tasks" in html


@pytest.mark.django_db
def test_home_without_tasks_has_an_empty_state(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "No task is published yet" in response.content.decode()


@pytest.mark.django_db
def test_header_shows_log_in_or_the_user(client, staff_client):
    anonymous = client.get("/").content.decode()
    assert "Log in" in anonymous and 'href="/admin/"' not in anonymous
    staff = staff_client.get("/").content.decode()
    assert "boss" in staff and 'href="/admin/"' in staff and "Log in" not in staff


# --- Task list ----------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_published_tasks_with_badges(client):
    task = make_tabular()
    add_version(task)
    make_image()
    make_tabular("draft", title="Unpublished Draft", published=False)
    response = client.get("/tasks/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Titanic Prediction" in html and "Predict who survived." in html
    assert "MNIST Digits" in html
    assert 'class="badge scheme-federated"' in html
    assert 'class="badge scheme-decentralized"' in html
    assert 'class="badge type-tabular"' in html
    assert 'class="badge type-image"' in html
    assert "1,234,567 parameters" in html
    assert "4.7 MB" in html
    assert 'href="/tasks/titanic/"' in html
    assert "Unpublished Draft" not in html
    assert "badge-unpublished" not in html


@pytest.mark.django_db
def test_list_shows_unpublished_tasks_to_staff_with_a_badge(staff_client):
    make_tabular("draft", title="Unpublished Draft", published=False)
    html = staff_client.get("/tasks/").content.decode()
    assert "Unpublished Draft" in html
    assert "badge-unpublished" in html


@pytest.mark.django_db
def test_list_filters_by_scheme_and_data_type_and_keeps_the_selection(client):
    make_tabular()
    make_image()
    make_text()
    response = client.get("/tasks/", {"scheme": "decentralized"})
    html = response.content.decode()
    assert [t.id for t in response.context["tasks"]] == ["mnist"]
    assert "MNIST Digits" in html and "Titanic Prediction" not in html and "WikiText" not in html
    assert '<option value="decentralized" selected>' in html

    response = client.get("/tasks/", {"data_type": "text"})
    assert [t.id for t in response.context["tasks"]] == ["wikitext"]
    assert '<option value="text" selected>' in response.content.decode()

    response = client.get("/tasks/", {"scheme": "federated", "data_type": "tabular"})
    assert [t.id for t in response.context["tasks"]] == ["titanic"]


@pytest.mark.django_db
def test_list_ignores_unknown_filter_values(client):
    make_tabular()
    make_image()
    response = client.get("/tasks/", {"scheme": "bogus", "data_type": "video"})
    assert response.status_code == 200
    assert {t.id for t in response.context["tasks"]} == {"titanic", "mnist"}


@pytest.mark.django_db
def test_list_empty_state_when_nothing_matches(client):
    make_tabular()
    html = client.get("/tasks/", {"scheme": "local", "data_type": "image"}).content.decode()
    assert "No task matches these filters" in html
    assert "Titanic Prediction" not in html


# --- Task detail --------------------------------------------------------------------


@pytest.mark.django_db
def test_detail_shows_settings_and_the_current_model(client):
    task = make_tabular(
        epochs=12, round_duration=3, batch_size=30, validation_split=0.25, min_participants=4,
        input_columns=["Age", "Fare"], output_columns=["Survived"], preprocessing=["sanitize"],
        aggregator="trimmed_mean", aggregator_params={"beta": 0.1}, clipping_radius=1.5, noise_scale=0.3,
        server_optimizer="fedavgm", server_optimizer_params={"lr": 0.5, "momentum": 0.9},
        summary_overview="<p>About <strong>Titanic</strong>.</p>", model_description="A small MLP.",
        data_format="A CSV file.", sample_dataset_instructions="Download train.csv.",
        data_example=[{"columnName": "Age", "columnData": ["22", "38"]},
                      {"columnName": "Survived", "columnData": ["0", "1"]}],
    )
    add_version(task, 1)
    add_version(task, 2, parameter_count=17285, total_bytes=69140)
    response = client.get("/tasks/titanic/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Titanic Prediction</h1>" in html
    assert "Training settings" in html
    for text in ("Epochs</th><td>12", "3 epochs", "Batch size</th><td>30", "0.25", "Min. participants</th><td>4",
                 "<code>Age</code>", "<code>Fare</code>", "<code>Survived</code>", "sanitize", "Trimmed mean",
                 "<code>beta</code> = 0.1", "clipping radius 1.5, noise scale 0.3", "FedAvgM (server momentum)",
                 "<code>momentum</code> = 0.9"):
        assert text in html, text
    assert "<strong>Titanic</strong>" in html  # curated HTML, not escaped
    assert "A small MLP." in html and "A CSV file." in html and "Download train.csv." in html
    assert "<th scope=\"col\">Age</th>" in html and "<td>38</td>" in html
    assert "17,285" in html and "67.5 KB" in html and "v2" in html and "v1" in html
    assert 'href="/tasks/titanic/model.json"' in html
    assert "tf.loadLayersModel('http://testserver/tasks/titanic/model.json')" in html
    assert "Train on your data" in html and 'href="/tasks/titanic/train/"' in html


@pytest.mark.django_db
def test_detail_shows_image_and_text_specific_settings(client):
    make_image()
    html = client.get("/tasks/mnist/").content.decode()
    assert "28 × 28 px" in html and "<li>zero</li>" in html and "<li>one</li>" in html
    assert "Tokenizer" not in html and "Input columns" not in html
    make_text()
    html = client.get("/tasks/wikitext/").content.decode()
    assert "UTF-8 bytes" in html and "64 tokens" in html
    assert "Image size" not in html


@pytest.mark.django_db
def test_detail_without_model_and_with_an_active_conversion(client):
    task = make_image()
    ConversionJob.objects.create(task=task, source="provider:mnist", status="running")
    html = client.get("/tasks/mnist/").content.decode()
    assert "Model conversion running…" in html
    assert "no model yet" in html
    assert "loadLayersModel" not in html


@pytest.mark.django_db
def test_detail_escapes_plain_text_fields(client):
    make_tabular(data_format="<script>alert(1)</script>")
    html = client.get("/tasks/titanic/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.django_db
def test_detail_404_for_unknown_task(client):
    assert client.get("/tasks/nope/").status_code == 404


@pytest.mark.django_db
def test_unpublished_task_is_hidden_from_anonymous_but_visible_to_staff(client, staff_client):
    make_tabular("draft", title="Unpublished Draft", published=False)
    assert client.get("/tasks/draft/").status_code == 404
    response = staff_client.get("/tasks/draft/")
    assert response.status_code == 200
    assert "Unpublished Draft" in response.content.decode()
    assert "badge-unpublished" in response.content.decode()


# --- Template filters ---------------------------------------------------------------


def render(source: str, **context) -> str:
    return Template("{% load disco_format %}" + source).render(Context(context))


def test_thousands_and_filesize_filters():
    assert render("{{ n|thousands }}", n=1234567) == "1,234,567"
    assert render("{{ n|thousands }}", n=12) == "12"
    assert render("{{ n|thousands }}", n=None) == "None"
    assert render("{{ n|filesize }}", n=512) == "512 B"
    assert render("{{ n|filesize }}", n=69140) == "67.5 KB"
    assert render("{{ n|filesize }}", n=5 * 1024 * 1024) == "5.0 MB"


def test_example_table_accepts_single_values_and_lists():
    source = ("{% with t=d|example_table %}{{ t.columns|join:',' }}|"
              "{% for r in t.rows %}{{ r|join:',' }};{% endfor %}{% endwith %}")
    table = render(source, d=[{"columnName": "x", "columnData": ["1", "2"]}, {"columnName": "y", "columnData": "a"}])
    assert table == "x,y|1,a;2,;"


def test_paragraphs_keeps_html_and_wraps_plain_text():
    assert render("{{ v|safe|paragraphs }}", v="<p>Hi</p>") == "<p>Hi</p>"
    assert render("{{ v|safe|paragraphs }}", v="One\n\nTwo") == "<p>One</p>\n\n<p>Two</p>"
    assert render("{{ v|paragraphs }}", v="<b>x</b>") == "<p>&lt;b&gt;x&lt;/b&gt;</p>"


def test_absolute_url_tag():
    request = RequestFactory().get("/")
    assert render("{% absolute_url p %}", p="/tasks/x/model.json", request=request) == "http://testserver/tasks/x/model.json"
