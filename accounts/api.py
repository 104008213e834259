"""``POST /api/token/``: a user's API token for their username and password, limited per address."""

from __future__ import annotations

from typing import Any

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled
from rest_framework.request import Request

from disco_site.throttling import TokenThrottle, describe_rate, describe_wait


class TokenView(ObtainAuthToken):
    """Answers ``{"token": key}``; wrong passwords also count towards the log-in lockout (django-axes)."""

    throttle_classes = [TokenThrottle]

    def throttled(self, request: Request, wait: float | None) -> Any:
        rate = TokenThrottle().get_rate()
        raise Throttled(wait, detail=f"Too many token requests from your address (limit {describe_rate(rate)}). "
                                     f"Try again in {describe_wait(wait or 60)}.")
