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


def test_wrong_passwords_lock_the_username_out_from_that_address(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    get_user_model().objects.create_user("dana", password="a-Long-pass-phrase-9")
    for _ in range(2):
        response = client.post("/accounts/login/", {"username": "dana", "password": "guess"})
        assert response.status_code == 200 and "Please enter a correct username and password" in \
            response.content.decode()
    locked = client.post("/accounts/login/", {"username": "dana", "password": "guess"})
    assert locked.status_code == 429
    html = locked.content.decode()
    assert "Too many failed log-ins for this username from your address (3 in a row)" in html
    assert "blocked for 15 minutes" in html
    # Now even the right password is refused from this address, and no session is opened.
    right = client.post("/accounts/login/", {"username": "dana", "password": "a-Long-pass-phrase-9"})
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    # The same username from another address is not locked out.
    other = Client(REMOTE_ADDR="203.0.113.9")
    assert other.post("/accounts/login/", {"username": "dana", "password": "a-Long-pass-phrase-9"}).status_code == 302


def test_a_good_log_in_resets_the_count(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    get_user_model().objects.create_user("dana", password="a-Long-pass-phrase-9")
    for _ in range(5):
        client.post("/accounts/login/", {"username": "dana", "password": "guess"})
        client.post("/accounts/login/", {"username": "dana", "password": "guess"})
        assert client.post("/accounts/login/", {"username": "dana", "password": "a-Long-pass-phrase-9"}
                           ).status_code == 302
        client.post("/accounts/logout/")


def test_sign_ups_are_limited_per_address(client, settings):
    settings.DISCO_SIGNUP_RATE = "3/hour"
    for n in range(3):
        response = client.post("/accounts/signup/", {"username": f"bot{n}", "password1": "a-Long-pass-phrase-9",
                                                     "password2": "a-Long-pass-phrase-9"})
        assert response.status_code == 302
        client.post("/accounts/logout/")
    refused = client.post("/accounts/signup/", {"username": "bot3", "password1": "a-Long-pass-phrase-9",
                                                "password2": "a-Long-pass-phrase-9"})
    assert refused.status_code == 429
    html = refused.content.decode()
    assert "Too many sign-ups from your address (limit 3 per hour). No account was created" in html
    assert get_user_model().objects.count() == 3 and not get_user_model().objects.filter(username="bot3").exists()
    other = Client(REMOTE_ADDR="203.0.113.9")
    assert other.post("/accounts/signup/", {"username": "human", "password1": "a-Long-pass-phrase-9",
                                            "password2": "a-Long-pass-phrase-9"}).status_code == 302
