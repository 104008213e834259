"""Uploads are stopped as soon as their files pass DISCO_MAX_MODEL_BYTES, and leave nothing behind."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from rest_framework.authtoken.models import Token

from tasks.models import ConversionJob, ModelVersion, Task
from tests.conftest import snapshot
from tests.tasks.test_api_create import DISCO_TASK
from tests.tasks.test_contributor_views import FORM

pytestmark = pytest.mark.django_db

LIMIT = 200_000
BIG = 2_000_000


@pytest.fixture
def incoming(settings, tmp_path):
    """A small limit, and uploads spooled to a folder of their own (so we can see it stays empty)."""
    settings.DISCO_MAX_MODEL_BYTES = LIMIT
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000  # anything bigger goes to a temporary file
    folder = tmp_path / "incoming"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="a-Long-pass-phrase-9")


def big_files() -> list[SimpleUploadedFile]:
    # Two files, each under the limit, together over it: the count is per request.
    return [SimpleUploadedFile("model.json", b"{" + b" " * (LIMIT // 2) + b"}"),
            SimpleUploadedFile("group1-shard1of1.bin", b"\0" * BIG)]


def assert_nothing_stored(media_root, incoming, before):
    assert Task.objects.count() == 0 and ModelVersion.objects.count() == 0 and ConversionJob.objects.count() == 0
    assert snapshot(media_root) == before
    assert list(incoming.iterdir()) == []  # no spooled part left behind


def test_the_form_stops_an_upload_past_the_limit_while_it_streams(alice, incoming, media_root):
    client = Client()
    client.force_login(alice)
    before = snapshot(media_root)
    response = client.post("/tasks/new/", {**FORM, "model_files": big_files()})
    assert response.status_code == 413
    html = response.content.decode()
    # Stopped a chunk or so past 0.2 MB, long before the 2.1 MB sent.
    assert "The model files pass 0.3 MB, so the upload was stopped: the limit is 0.2 MB for all model files" in html
    assert "Nothing was stored. Upload a smaller model." in html
    assert 'value="heart"' in html  # what was typed before the files is kept
    assert_nothing_stored(media_root, incoming, before)


def test_a_body_over_the_limit_is_refused_before_its_files_are_read(alice, incoming, media_root, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client = Client()
    client.force_login(alice)
    before = snapshot(media_root)
    html = client.post("/tasks/new/", {**FORM, "model_files": big_files()}).content.decode()
    assert "The upload is 2.1 MB, so it was refused before it was read: the limit is 0.2 MB" in html
    assert_nothing_stored(media_root, incoming, before)


def test_the_api_stops_an_upload_past_the_limit(alice, incoming, media_root):
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    before = snapshot(media_root)
    response = client.post("/api/tasks/", {"task": json.dumps(DISCO_TASK), "model": big_files()})
    assert response.status_code == 413
    assert response.json()["model"][0].startswith("The model files pass 0.3 MB, so the upload was stopped")
    assert_nothing_stored(media_root, incoming, before)


def test_the_api_refuses_a_too_long_body_at_once(alice, incoming, media_root, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    body = encode_multipart(BOUNDARY, {"task": json.dumps(DISCO_TASK), "model": big_files()})
    response = client.generic("POST", "/api/tasks/", body, content_type=MULTIPART_CONTENT)
    assert response.status_code == 413 and "refused before it was read" in response.json()["model"][0]
    assert_nothing_stored(media_root, incoming, before={})


def test_uploads_under_the_limit_still_work(alice, incoming, tiny_artifacts):
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    files = {"model.json": tiny_artifacts.model_json_bytes(), **tiny_artifacts.shards}
    response = client.post("/api/tasks/", {"task": json.dumps(DISCO_TASK),
                                           "model": [SimpleUploadedFile(n, b) for n, b in files.items()]})
    assert response.status_code == 201, response.content
    assert list(incoming.iterdir()) == []
