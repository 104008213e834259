"""Contributor accounts: sign up, log in, log out (a POST), and the navigation that goes with them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db


def test_sign_up_creates_the_account_and_logs_in(client):
    response = client.post("/accounts/signup/", {"username": "dana", "password1": "a-Long-pass-phrase-9",
                                                 "password2": "a-Long-pass-phrase-9", "next": "/tasks/new/"})
    assert response.status_code == 302 and response["Location"] == "/tasks/new/"
    user = get_user_model().objects.get(username="dana")
    assert not user.is_staff and client.get("/tasks/new/").status_code == 200


def test_sign_up_errors_are_shown_and_unsafe_next_is_ignored(client):
    html = client.post("/accounts/signup/", {"username": "dana", "password1": "short",
                                             "password2": "other"}).content.decode()
    assert "The two password fields didn’t match." in html and 'value="dana"' in html
    assert get_user_model().objects.count() == 0
    response = client.post("/accounts/signup/", {"username": "eve", "password1": "a-Long-pass-phrase-9",
                                                 "password2": "a-Long-pass-phrase-9", "next": "https://evil.test/"})
    assert response["Location"] == "/tasks/mine/"


def test_log_in_and_log_out(client):
    get_user_model().objects.create_user("dana", password="a-Long-pass-phrase-9")
    html = client.get("/accounts/login/?next=/tasks/mine/").content.decode()
    assert 'name="next" value="/tasks/mine/"' in html and "/accounts/signup/" in html
    response = client.post("/accounts/login/", {"username": "dana", "password": "a-Long-pass-phrase-9",
                                                "next": "/tasks/mine/"})
    assert response["Location"] == "/tasks/mine/"
    home = client.get("/").content.decode()
    assert "My tasks" in home and 'action="/accounts/logout/"' in home and "Log in</a>" not in home
    assert client.get("/accounts/logout/").status_code == 405  # logging out is a POST
    assert client.post("/accounts/logout/")["Location"] == "/"
    assert "Sign up</a>" in client.get("/").content.decode()


def test_log_out_needs_the_csrf_token():
    get_user_model().objects.create_user("dana", password="a-Long-pass-phrase-9")
    client = Client(enforce_csrf_checks=True)
    client.login(username="dana", password="a-Long-pass-phrase-9")
    assert client.post("/accounts/logout/").status_code == 403
    assert client.post("/accounts/signup/", {"username": "x"}).status_code == 403
