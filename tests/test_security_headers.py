"""Every response carries the Content-Security-Policy, X-Content-Type-Options and Referrer-Policy.

The policy forbids inline script; the templates and page scripts are checked for anything that would
need it (inline ``<script>`` bodies, ``on*=`` attributes, ``javascript:`` URLs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from disco_site.security_headers import POLICY, TRAINING_POLICY

ROOT = Path(__file__).resolve().parent.parent

PAGES = ["/tasks/", "/tasks/served/", "/admin/tasks/task/served/change/", "/admin/",
         "/api/tasks/", "/api/tasks/served/", "/tasks/served/model.json", "/tasks/does-not-exist/",
         "/static/disco/task_list.js"]


def directives(policy: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in policy.split(";") if part.strip())}


def test_the_policy_allows_no_inline_script_and_nothing_from_other_sites():
    policy = directives(POLICY)

    assert policy["script-src"] == ["'self'", "'wasm-unsafe-eval'"]  # wasm compiles; no 'unsafe-inline'/'unsafe-eval'
    assert policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:", "blob:"] and policy["worker-src"] == ["'self'", "blob:"]
    assert "unsafe-inline" not in POLICY and "'unsafe-eval'" not in POLICY and "*" not in POLICY


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_every_response_carries_the_security_headers(admin_client, served, url):
    response = admin_client.get(url)

    assert response.status_code in (200, 404), url
    assert response["Content-Security-Policy"] == POLICY
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_anonymous_pages_and_errors_carry_them_too(client, served):
    for url in ("/", "/tasks/", "/tasks/served/", "/accounts/login/", "/admin/login/",
                "/api/tasks/served/", "/api/tasks/nope/"):
        response = client.get(url)
        assert response["Content-Security-Policy"] == POLICY and response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"


def test_a_views_own_policy_is_kept():
    from django.http import HttpResponse
    from django.test import RequestFactory

    from disco_site.security_headers import ContentSecurityPolicyMiddleware

    def view(request):
        response = HttpResponse("ok")
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    response = ContentSecurityPolicyMiddleware(view)(RequestFactory().get("/"))
    assert response["Content-Security-Policy"] == "default-src 'none'"


def test_templates_have_no_inline_scripts_or_handlers():
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or "json_script" in text, (path, tag)
        assert not re.search(r"<script>\s*\S", text), path
        assert not re.search(r"\son[a-z]+\s*=", text), path
        assert "javascript:" not in text and 'style="' not in text, path


@pytest.mark.django_db
def test_the_training_page_is_cross_origin_isolated_with_blob_scripts(client, served):
    response = client.get("/tasks/served/train/")

    assert response.status_code == 200
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert response["Content-Security-Policy"] == TRAINING_POLICY
    policy = directives(TRAINING_POLICY)
    # The only difference: the wasm backend's pthread workers importScripts() a blob: URL.
    assert policy.pop("script-src") == ["'self'", "'wasm-unsafe-eval'", "blob:"]
    assert policy == {k: v for k, v in directives(POLICY).items() if k != "script-src"}
    assert response["X-Content-Type-Options"] == "nosniff" and response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_other_pages_are_not_embedder_isolated(client, served):
    for url in ("/", "/tasks/", "/tasks/served/", "/tasks/nope/train/"):
        assert "Cross-Origin-Embedder-Policy" not in client.get(url), url


@pytest.mark.django_db
def test_static_files_are_same_origin_resources_and_workers_get_the_training_policy(client):
    script = client.get("/static/disco/task_list.js")
    assert script["Cross-Origin-Resource-Policy"] == "same-origin"
    assert script["Cross-Origin-Embedder-Policy"] == "require-corp"  # inert on a script, needed on a worker's
    assert script["Content-Security-Policy"] == POLICY
    wasm = client.get("/static/vendor/tfjs-backend-wasm/tfjs-backend-wasm-threaded-simd.wasm")
    assert wasm.status_code == 200 and wasm["Cross-Origin-Resource-Policy"] == "same-origin"
    webgpu = client.get("/static/vendor/tfjs-backend-webgpu/tf-backend-webgpu.min.js")  # vendored, no CDN
    assert webgpu.status_code == 200 and webgpu["Cross-Origin-Resource-Policy"] == "same-origin"
