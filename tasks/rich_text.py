"""Contributors' rich text: the one place that decides which HTML a task's description may hold.

Anyone can sign up and write a task's overview and model description, so that HTML comes
from a stranger. ``sanitize_html`` keeps a small allow-list of formatting tags (paragraphs,
emphasis, lists, code, simple tables, links) and drops everything else with nh3 (the
Rust ``ammonia`` sanitizer): scripts and styles with their content, event-handler and style
attributes, ``javascript:``/``data:`` links. Links keep only http(s) or relative
addresses and always carry ``rel="noopener noreferrer nofollow"``.

It runs twice: when a task is saved (``Task.save``, so the API and every DISCO-style client
get clean HTML) and again when a page renders it (the ``rich_text`` filter), which also
covers rows written before sanitizing existed or by ``QuerySet.update``. Sanitizing is
idempotent, so the second pass changes nothing on clean text.
"""

from __future__ import annotations

import re

import nh3
from django.template.defaultfilters import linebreaks_filter
from django.utils.safestring import SafeString, mark_safe

# Which task fields hold HTML. Every other text field is plain text and is escaped when shown.
RICH_TEXT_FIELDS: tuple[str, ...] = ("summary_overview", "model_description")

ALLOWED_TAGS: frozenset[str] = frozenset({
    "p", "br", "hr", "strong", "b", "em", "i", "u", "s", "sub", "sup", "small", "mark", "abbr",
    "code", "pre", "kbd", "blockquote", "ul", "ol", "li", "dl", "dt", "dd",
    "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "caption",
})
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "th": {"scope", "colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
    "ol": {"start"},
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https"})
LINK_REL = "noopener noreferrer nofollow"
# Removed together with everything inside them (nh3 strips other unknown tags but keeps their text).
DROPPED_WITH_CONTENT: frozenset[str] = frozenset({"script", "style", "template", "iframe", "object", "noscript",
                                                  "textarea", "title", "svg", "math"})

_BLOCK_TAG = re.compile(r"<\s*(p|ul|ol|dl|table|h[1-6]|pre|blockquote|hr)\b", re.IGNORECASE)


def sanitize_html(html: str) -> str:
    """``html`` with only the allowed tags, attributes and http(s)/relative links left."""
    if not html:
        return ""
    return nh3.clean(
        str(html),
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )


def render_rich_text(html: str) -> SafeString:
    """Sanitized HTML for a page: kept as is when it has blocks, else blank lines become paragraphs."""
    clean = sanitize_html(html)
    if not clean or _BLOCK_TAG.search(clean):
        return mark_safe(clean)  # noqa: S308 - sanitized just above
    # linebreaks only adds <p> and <br> around text that is already safe HTML.
    return mark_safe(linebreaks_filter(clean, autoescape=False))  # noqa: S308

