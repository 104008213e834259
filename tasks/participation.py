"""Who may take part in a task: the one place the rule is written.

A task's ``participation`` is ``open`` (anyone with the link), ``signed_in`` (a Django
account: a session, or a DRF API token) or ``invited`` (an invitation link whose secret the
owner can rotate). The owner and administrators always may. The rule guards every way into
a task's training: both WebSocket endpoints, the model files, the training page and the
sample data (the task's page and its API entry stay readable, so people learn how to join).

Credentials never travel in a URL, except the invitation link itself, once:
``/tasks/<id>/join/<secret>/`` stores a grant in the session and redirects. The grant is the
SHA-256 of the secret, so rotating the secret invalidates every grant and link at once.
Scripts (``manage.py participate --token``) send their credential in a header,
``X-Disco-Token`` (an API token, or an invitation secret); ``Authorization: Token <key>``
also works for API tokens. Secrets are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from .choices import Participation

TOKEN_HEADER = "X-Disco-Token"
SESSION_KEY = "disco_invitations"


@dataclass(frozen=True)
class Refusal:
    """Why someone may not take part, and what to do about it."""

    code: str  # "sign_in_required" | "invitation_required"
    message: str


def new_invitation_secret() -> str:
    return secrets.token_urlsafe(24)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def rotate_invitation(task: Any) -> str:
    """Give ``task`` a new invitation secret; every earlier link and grant stops working. Returns the secret."""
    task.invitation_secret = new_invitation_secret()
    type(task).objects.filter(pk=task.pk).update(invitation_secret=task.invitation_secret)
    return task.invitation_secret


def invitation_path(task: Any) -> str:
    """The invitation link's path (empty unless the task is invitation-only)."""
    if task.participation != Participation.INVITED or not task.invitation_secret:
        return ""
    return reverse("tasks:join", args=[task.pk, task.invitation_secret])


def secret_matches(task: Any, secret: str) -> bool:
    current = task.invitation_secret or ""
    return bool(current) and hmac.compare_digest(secret.encode(), current.encode())


def grant_invitation(session: Any, task: Any, secret: str) -> bool:
    """Store in ``session`` that it holds ``task``'s current invitation, if ``secret`` is it."""
    if not secret_matches(task, secret):
        return False
    grants = dict(session.get(SESSION_KEY) or {})
    grants[task.pk] = _digest(secret)
    session[SESSION_KEY] = grants
    return True


def _session_grant(session: Any, task: Any) -> bool:
    if session is None or not task.invitation_secret:
        return False
    stored = (session.get(SESSION_KEY) or {}).get(task.pk)
    return isinstance(stored, str) and hmac.compare_digest(stored, _digest(task.invitation_secret))


def token_from_headers(headers: Mapping[str, str]) -> str:
    """The participant's credential from request headers (names compared case-insensitively)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    token = lowered.get(TOKEN_HEADER.lower(), "").strip()
    if token:
        return token
    scheme, _, key = lowered.get("authorization", "").strip().partition(" ")
    return key.strip() if scheme.lower() == "token" else ""


def scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An ASGI scope's headers as a dict of strings."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _token_user(token: str) -> Any:
    if not token:
        return None
    from rest_framework.authtoken.models import Token

    found = Token.objects.select_related("user").filter(key=token).first()
    return found.user if found is not None and found.user.is_active else None


def refusal(task: Any, *, user: Any = None, session: Any = None, token: str = "") -> Refusal | None:
    """``None`` when this person may take part in ``task``; else why not and what to do."""
    if task.participation == Participation.OPEN:
        return None
    if user is None or not user.is_authenticated:
        user = _token_user(token)
    signed_in = user is not None and user.is_authenticated
    if signed_in and (user.is_staff or user.pk == task.owner_id):
        return None
    if task.participation == Participation.SIGNED_IN:
        if signed_in:
            return None
        return Refusal("sign_in_required", f"Task '{task.pk}' is open to signed-in participants only: sign in at "
                                           f"{reverse('login')} (scripts: pass an API token with --token, "
                                           f"sent as the {TOKEN_HEADER} header).")
    if _session_grant(session, task) or (token and secret_matches(task, token)):
        return None
    return Refusal("invitation_required", f"Task '{task.pk}' is open to invited participants only: ask its owner "
                                          "for an invitation link and open it in this browser (scripts: pass the "
                                          f"invitation's secret with --token, sent as the {TOKEN_HEADER} header).")


def request_refusal(request: Any, task: Any) -> Refusal | None:
    """``refusal`` for a Django request: its user, session and headers."""
    return refusal(task, user=getattr(request, "user", None), session=getattr(request, "session", None),
                   token=token_from_headers(request.headers))


def scope_refusal(scope: Mapping[str, Any], task: Any) -> Refusal | None:
    """``refusal`` for a WebSocket handshake: the session cookie's user and grants, and the headers."""
    return refusal(task, user=scope.get("user"), session=scope.get("session"),
                   token=token_from_headers(scope_headers(scope)))
