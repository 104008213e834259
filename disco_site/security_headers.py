"""The Content-Security-Policy of every response.

Task text comes from strangers (anyone can sign up and create a task), so the pages assume
that one day some HTML will slip past the sanitizer (``tasks.rich_text``). The policy makes
such HTML inert: scripts run only from the site's own files (no inline ``<script>``, no
``onerror=`` attributes, no ``javascript:`` URLs, no ``eval``), nothing is loaded from other
sites, forms post only here and no other site may frame the pages.

What the pages need, and why each source is there:

- ``script-src 'self' 'wasm-unsafe-eval'``: our ES modules and the vendored TF.js, Chart.js
  and Papa Parse; TF.js's wasm backend compiles WebAssembly (``WebAssembly.instantiate``),
  which CSP gates behind ``'wasm-unsafe-eval'`` (it does not allow JavaScript ``eval``).
  The webgl and cpu backends need nothing more. tf.min.js would fall back to ``Function(...)``
  once at load (its bundled regenerator-runtime); ``static/disco/tfjs_csp_shim.js``, loaded
  just before it, avoids that, so no ``'unsafe-eval'`` is needed.
- ``style-src 'self'``: stylesheets only; scripts still set ``element.style`` (Chart.js,
  the confusion matrix), which CSP does not restrict.
- ``img-src 'self' data: blob:``: the favicon and Pico's icons are ``data:`` URIs; image
  previews of a participant's own files are ``blob:`` URLs.
- ``connect-src 'self'``: fetches and the federated / decentralized WebSockets, all to this
  host. CSP Level 3 matches ``ws:``/``wss:`` on the page's own host with ``'self'``, which
  ``tests/browser/test_hostile_task.py`` checks in Chromium 156 (current Firefox and Safari
  follow the same rule; a browser predating it would need ``ws(s)://<host>`` listed).
- ``worker-src 'self' blob:``: web workers libraries may start from a blob.

Views may set their own ``Content-Security-Policy`` header; this middleware then leaves it.
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy`` come from Django's
``SecurityMiddleware`` (settings ``SECURE_CONTENT_TYPE_NOSNIFF``, ``SECURE_REFERRER_POLICY``).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

CSP_HEADER = "Content-Security-Policy"

DIRECTIVES: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'", "'wasm-unsafe-eval'"),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:", "blob:"),
    "font-src": ("'self'",),
    "connect-src": ("'self'",),
    "worker-src": ("'self'", "blob:"),
    "object-src": ("'none'",),
    "base-uri": ("'self'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}


def content_security_policy(directives: dict[str, tuple[str, ...]] = DIRECTIVES) -> str:
    """The header value: ``name source source; name source; ...``."""
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


POLICY = content_security_policy()


class ContentSecurityPolicyMiddleware:
    """Add the site's Content-Security-Policy to every response that has none."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if CSP_HEADER not in response:
            response[CSP_HEADER] = POLICY
        return response
