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
  The webgl, webgpu and cpu backends need nothing more (WebGPU's WGSL shaders are compiled by
  ``GPUDevice.createShaderModule``, which CSP does not gate). tf.min.js would fall back to ``Function(...)``
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

Cross-origin isolation of the training page (``cross_origin_isolated``, on ``tasks.train_views.task_train``):

- ``Cross-Origin-Opener-Policy: same-origin`` + ``Cross-Origin-Embedder-Policy: require-corp`` make
  the page ``crossOriginIsolated``, which is what gives it ``SharedArrayBuffer`` and so the threaded
  SIMD build of TF.js's wasm backend (one thread per core instead of one). Every page already has
  COOP ``same-origin`` (Django's ``SECURE_CROSS_ORIGIN_OPENER_POLICY`` default); COEP is the training
  page's only: it is the only page that computes, and COEP ``require-corp`` on the others would buy
  nothing and forbid them any cross-origin embed later (a task's example image on another site, say).
  Every subresource of the training page is ours (``default-src 'self'``), so COEP blocks nothing it loads.
- Its policy is ``TRAINING_POLICY``: the site's, plus ``blob:`` in ``script-src``. The threaded wasm
  backend starts its pthread workers from ``blob:`` URLs (``worker-src blob:``, already allowed), and
  each of them ``importScripts`` the Emscripten module factory from another ``blob:`` URL; a blob worker
  inherits the page's policy, so without ``blob:`` in ``script-src`` the threads never start. A ``blob:``
  URL can only be minted by script already running in this origin, so HTML slipping past the
  sanitizer still cannot run anything: no inline script, no ``eval`` (nor ``'unsafe-eval'``).
- Static files (``STATIC_URL``) carry ``Cross-Origin-Resource-Policy: same-origin`` (only this site may
  embed them; same-origin loads do not need it under COEP, but it costs nothing and keeps other sites
  from pulling our scripts into their processes) and ``Cross-Origin-Embedder-Policy: require-corp``,
  which is inert on scripts and images but required on a worker's script: a dedicated worker of an
  isolated page must itself be COEP ``require-corp``. The training worker scripts
  (``ISOLATED_STATIC``) get ``TRAINING_POLICY`` as well, since a worker's policy is its own response's
  and its wasm threads are started from blob URLs too.

Views may set their own ``Content-Security-Policy`` header; this middleware then leaves it.
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy`` come from Django's
``SecurityMiddleware`` (settings ``SECURE_CONTENT_TYPE_NOSNIFF``, ``SECURE_REFERRER_POLICY``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
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

TRAINING_DIRECTIVES: dict[str, tuple[str, ...]] = {**DIRECTIVES, "script-src": (*DIRECTIVES["script-src"], "blob:")}
TRAINING_POLICY = content_security_policy(TRAINING_DIRECTIVES)

ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}

# Static files that run as the training page's workers: they need its policy and COEP (see above).
ISOLATED_STATIC = ("disco/train_worker.js",)


def cross_origin_isolated(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve ``view``'s successful pages cross-origin isolated, with ``TRAINING_POLICY``."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 200:
            for name, value in ISOLATION_HEADERS.items():
                response[name] = value
            response[CSP_HEADER] = TRAINING_POLICY
        return response

    return wrapper


def _static_headers(path: str) -> dict[str, str]:
    """Headers added to a static file's response (``path`` is the request path)."""
    prefix = "/" + settings.STATIC_URL.lstrip("/")
    if not path.startswith(prefix):
        return {}
    headers = {"Cross-Origin-Resource-Policy": "same-origin",
               "Cross-Origin-Embedder-Policy": "require-corp"}
    if path[len(prefix):] in ISOLATED_STATIC:
        headers[CSP_HEADER] = TRAINING_POLICY
    return headers


class ContentSecurityPolicyMiddleware:
    """Add the site's Content-Security-Policy to every response that has none, and CORP/COEP to static files."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        for name, value in _static_headers(request.path).items():
            response[name] = value
        if CSP_HEADER not in response:
            response[CSP_HEADER] = POLICY
        return response
