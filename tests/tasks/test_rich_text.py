"""Contributors' HTML: the sanitizer's allow-list, sanitizing on save, and what the task page renders."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.template import engines

from tasks.models import Task
from tasks.rich_text import LINK_REL, render_rich_text, sanitize_html

ROOT = Path(__file__).resolve().parents[2]

HOSTILE_HTML = [
    "<script>window.__pwned = 1</script>",
    "<img src=x onerror=\"window.__pwned = 1\">",
    "<svg onload=\"window.__pwned = 1\"><circle r=1></circle></svg>",
    "<a href=\"javascript:window.__pwned=1\">click</a>",
    "<a href=\"JaVaScRiPt:alert(1)\">click</a>",
    "<a href=\"  java&#x09;script:alert(1)\">click</a>",
    "<a href=\"data:text/html,<script>alert(1)</script>\">click</a>",
    "<a href=\"vbscript:msgbox(1)\">click</a>",
    "<p onclick=\"alert(1)\" style=\"position:fixed;inset:0\">cover</p>",
    "<iframe src=\"https://evil.example/\"></iframe>",
    "<object data=\"x.swf\"></object><embed src=\"x.swf\">",
    "<style>body{display:none}</style>",
    "<form action=\"https://evil.example/\"><input name=password></form>",
    "<math><mi xlink:href=\"javascript:alert(1)\">m</mi></math>",
    "<base href=\"https://evil.example/\"><meta http-equiv=\"refresh\" content=\"0;url=https://evil.example\">",
    "\"><script>alert(1)</script>",
    "<scr<script>ipt>alert(1)</script>",
    "<!--><script>alert(1)</script>-->",
    "<details open ontoggle=alert(1)>x</details>",
]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


ACTIVE_TAGS = {"script", "iframe", "object", "embed", "style", "svg", "math", "input", "base", "meta", "img",
               "details", "frame", "link"}


def _has_active_content(html: str) -> bool:
    """Whether parsed ``html`` holds a tag, attribute or address that can run script or restyle the page."""
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        if tag in ACTIVE_TAGS:
            return True
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "srcdoc", "formaction", "action"):
                return True
            if name in ("href", "src") and value and not re.match(r"(https?://|/|#)", value.strip()):
                return True
    return False


# --- Prepare / Execute / Assert on literal strings --------------------------------------------

@pytest.mark.parametrize("html", HOSTILE_HTML)
def test_scripts_handlers_and_dangerous_urls_are_removed(html):
    clean = sanitize_html(html)

    assert not _has_active_content(clean), clean
    assert sanitize_html(clean) == clean  # idempotent: sanitizing on save and again on render changes nothing


@pytest.mark.parametrize("html", [
    "<p>About <strong>Titanic</strong> and <em>icebergs</em>.</p>",
    "<ul><li>one</li><li>two</li></ul><ol start=\"3\"><li>three</li></ol>",
    "<h3>Data</h3><pre><code>a,b\n1,2</code></pre><blockquote>quoted</blockquote>",
    "<table><thead><tr><th scope=\"col\">Age</th></tr></thead><tbody><tr><td>22</td></tr></tbody></table>",
    "x<sub>2</sub> y<sup>3</sup> <abbr title=\"convolutional\">CNN</abbr> <br> <code>fit()</code>",
])
def test_allowed_formatting_is_kept(html):
    assert sanitize_html(html) == html


def test_links_keep_http_and_relative_addresses_and_always_get_a_safe_rel():
    clean = sanitize_html('<a href="https://example.org/x?a=1&amp;b=2" target="_blank" rel="opener">ok</a>'
                          '<a href="/tasks/">here</a><a href="ftp://example.org/">ftp</a>')

    assert f'<a href="https://example.org/x?a=1&amp;b=2" rel="{LINK_REL}">ok</a>' in clean
    assert f'<a href="/tasks/" rel="{LINK_REL}">here</a>' in clean
    assert f'<a rel="{LINK_REL}">ftp</a>' in clean  # the text stays, the other scheme goes
    assert "target" not in clean and "opener\"" not in clean


def test_text_that_looks_like_html_is_escaped_not_dropped():
    assert sanitize_html("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert sanitize_html("") == ""


def test_render_wraps_plain_text_in_paragraphs_and_keeps_blocks():
    assert render_rich_text("One\n\nTwo <b>bold</b>") == "<p>One</p>\n\n<p>Two <b>bold</b></p>"
    assert render_rich_text("<p>Hi</p><script>x()</script>") == "<p>Hi</p>"
    assert render_rich_text("") == ""


# --- Through the model and the pages ------------------------------------------------------------

@pytest.mark.django_db
def test_saving_a_task_stores_sanitized_html(make_task):
    task = make_task("t1", summary_overview="<p>Fine</p><img src=x onerror=alert(1)>",
                     model_description="<b onmouseover=alert(1)>MLP</b><script>alert(1)</script>")

    task.refresh_from_db()
    assert task.summary_overview == "<p>Fine</p>"
    assert task.model_description == "<b>MLP</b>"


@pytest.mark.django_db
def test_the_api_returns_the_stored_clean_html(client, make_task):
    make_task("t1", summary_overview="<p>Fine</p><script>alert(1)</script>", model_description="<i>x</i>")

    display = client.get("/api/tasks/t1/").json()["displayInformation"]

    assert display["summary"]["overview"] == "<p>Fine</p>" and display["model"] == "<i>x</i>"


@pytest.mark.django_db
def test_the_task_page_renders_old_unsanitized_rows_safely(client, make_task):
    """Rows written before sanitizing existed (or by QuerySet.update) are sanitized again on render."""
    make_task("t1")
    hostile = "<p>Kept <em>formatting</em></p>" + "".join(HOSTILE_HTML)
    Task.objects.filter(pk="t1").update(
        summary_overview=hostile, model_description=hostile, sample_dataset_link="javascript:window.__pwned=1",
        data_format="<script>alert(1)</script>", sample_dataset_instructions="<img src=x onerror=alert(1)>",
        title="<script>alert(1)</script>", summary_preview="<svg onload=alert(1)>")

    html = client.get("/tasks/t1/").content.decode()
    main = html[html.index("<main"):html.index("</main>")]

    assert "<p>Kept <em>formatting</em></p>" in main
    assert not _has_active_content(main), main
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in main  # plain-text fields are shown as text
    assert "sample-dataset-link" not in main  # a stored javascript: link is not rendered at all


@pytest.mark.django_db
def test_the_sample_dataset_link_renders_when_it_is_a_web_address(client, make_task):
    make_task("t1", sample_dataset_link="https://example.org/data?x=1&y=2")

    html = client.get("/tasks/t1/").content.decode()

    assert ('<a href="https://example.org/data?x=1&amp;y=2" rel="noopener noreferrer nofollow" '
            'id="sample-dataset-link">') in html


def test_templates_never_mark_task_data_safe():
    """No template renders with |safe or autoescape off; help texts are marked safe in code instead."""
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        assert "|safe" not in text and "autoescape off" not in text, path


def test_page_scripts_never_insert_html_strings():
    """Task data reaches the DOM through textContent / setAttribute only (static/disco/trainer_ui.js ``el``)."""
    pattern = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|srcdoc|\beval\(|new Function")
    for path in (ROOT / "static" / "disco").rglob("*.js"):
        assert not pattern.search(path.read_text()), path


def test_render_filter_in_a_template():
    template = engines["django"].from_string("{% load disco_format %}{{ v|rich_text }}|{{ u|web_url }}")
    assert template.render({"v": "<b>x</b><script>y</script>", "u": "javascript:alert(1)"}) == "<p><b>x</b></p>|"
