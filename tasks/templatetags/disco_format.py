"""Small display filters for Disco's pages (django.contrib.humanize is not installed)."""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.template.defaultfilters import linebreaks_filter
from django.utils.safestring import SafeData

from tasks.preprocessing import preprocessing_steps
from tasks.rich_text import render_rich_text
from tasks.validation import is_web_url

register = template.Library()

_BLOCK_TAG = re.compile(r"<\s*(p|ul|ol|div|table|h[1-6]|pre|blockquote|figure|dl)\b", re.IGNORECASE)


@register.filter
def thousands(value: Any) -> Any:
    """1234567 -> '1,234,567'; anything that is not a number is returned unchanged."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return value
    return f"{number:,}"


@register.filter
def filesize(value: Any) -> Any:
    """A byte count for humans: 512 B, 27.4 KB, 1.3 MB (powers of 1024)."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        return value
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"
    return f"{size:.1f} GB"  # pragma: no cover


@register.filter
def rich_text(value: Any) -> str:
    """A contributor's HTML (overview, model description), sanitized: allowed tags kept, the rest removed."""
    return render_rich_text(str(value or ""))


@register.filter
def web_url(value: Any) -> str:
    """``value`` when it is an http(s) address, else '' (a stored ``javascript:`` link is never rendered)."""
    return value if is_web_url(value) else ""


@register.filter(is_safe=True, needs_autoescape=True)
def paragraphs(value: Any, autoescape: bool = True) -> str:
    """Plain text: escaped, and blank lines become paragraphs (already safe HTML with blocks is kept).

    Contributors' HTML goes through ``rich_text`` instead, never ``|safe``.
    """
    text = str(value or "")
    if isinstance(value, SafeData) and _BLOCK_TAG.search(text):
        return value
    return linebreaks_filter(value, autoescape=autoescape)


@register.filter
def example_table(data_example: Any) -> dict[str, list]:
    """``[{columnName, columnData}]`` -> ``{"columns": [...], "rows": [[...], ...]}`` for an HTML table.

    ``columnData`` is a single value (DISCO's format) or a list of values, one per row.
    """
    columns, cells = [], []
    for entry in data_example if isinstance(data_example, list) else []:
        if not isinstance(entry, dict):
            continue
        columns.append(str(entry.get("columnName", "")))
        data = entry.get("columnData", "")
        cells.append(list(data) if isinstance(data, (list, tuple)) else [data])
    height = max((len(c) for c in cells), default=0)
    rows = [[c[i] if i < len(c) else "" for c in cells] for i in range(height)]
    return {"columns": columns, "rows": rows}


@register.filter
def step_help(step: str, data_type: str) -> str:
    """The description of a preprocessing step for a data type, or '' when unknown."""
    return preprocessing_steps(str(data_type)).get(str(step), "")


@register.simple_tag(takes_context=True)
def absolute_url(context: template.Context, path: str) -> str:
    """``path`` as an absolute URL on the current host (needs the request context processor)."""
    request = context.get("request")
    return request.build_absolute_uri(path) if request is not None else path
