"""Counting a client's attempts in Django's cache, shared by sign-up, log-in, token and task-creation limits.

The cache is the per-process LocMem cache in embedded mode (one daphne process) and Redis
when ``REDIS_URL`` is set, so that every web process counts against the same numbers.
Rates are written as DRF writes them: ``"10/hour"``, ``"5/minute"``, ``"100/day"``.

The client's address is ``REMOTE_ADDR``: behind a proxy, run daphne with ``--proxy-headers``
so that it is the client's address and not the proxy's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PERIOD_WORDS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"10/hour"`` -> (10, 3600)."""
    try:
        count, period = rate.split("/")
        return int(count), _PERIODS[period.strip()[0]]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"A rate is written as 'count/period', e.g. '10/hour' (got {rate!r}).") from None


def describe_rate(rate: str) -> str:
    count, seconds = parse_rate(rate)
    return f"{count} per {_PERIOD_WORDS[seconds]}"


def describe_wait(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{round(seconds / 60)} minutes"


def client_address(request: Any) -> str:
    """The client's address (also django-axes' ``AXES_CLIENT_IP_CALLABLE``)."""
    return request.META.get("REMOTE_ADDR") or "unknown"


@dataclass(frozen=True)
class Limit:
    """``count`` attempts of one kind per client per ``seconds``-long window."""

    scope: str
    rate: str

    def _key(self, ident: str) -> tuple[str, float]:
        _, seconds = parse_rate(self.rate)
        window = int(time.time() // seconds)
        return f"disco-limit:{self.scope}:{ident}:{window}", (window + 1) * seconds - time.time()

    def wait(self, ident: str) -> float | None:
        """Seconds until ``ident`` may try again, or None if it may now (nothing is counted)."""
        count, _ = parse_rate(self.rate)
        key, remaining = self._key(ident)
        return remaining if (cache.get(key) or 0) >= count else None

    def hit(self, ident: str) -> float | None:
        """Count one attempt; returns the seconds to wait if it is over the limit (None if allowed)."""
        count, seconds = parse_rate(self.rate)
        key, remaining = self._key(ident)
        cache.add(key, 0, timeout=seconds + 1)
        try:
            used = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=seconds + 1)
            used = 1
        return remaining if used > count else None


class _RateFromSettings:
    """DRF binds the rates when it is imported; read them when used, so settings can change (tests)."""

    scope: str

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class TaskCreationThrottle(_RateFromSettings, UserRateThrottle):
    """New tasks per user (scope ``task_create``): the API's POST and the creation form share it."""

    scope = "task_create"

    def allow_request(self, request: Any, view: Any) -> bool:
        if view is not None and getattr(view, "action", None) != "create":
            return True
        return super().allow_request(request, view)


class TokenThrottle(_RateFromSettings, SimpleRateThrottle):
    """Token requests per client address (scope ``auth``), whatever the username."""

    scope = "auth"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing an address after too many wrong tokens (rate ``auth``)."""

    def authenticate(self, request: Any) -> Any:
        if not request.META.get("HTTP_AUTHORIZATION", "").lower().startswith(self.keyword.lower() + " "):
            return super().authenticate(request)
        limit = Limit("token_failures", api_settings.DEFAULT_THROTTLE_RATES["auth"])
        address = client_address(request)
        wait = limit.wait(address)
        if wait is not None:
            raise Throttled(wait, detail=_token_refusal(limit, wait))
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            limit.hit(address)
            raise


def _token_refusal(limit: Limit, wait: float) -> str:
    return (f"Too many wrong API tokens from your address (limit {describe_rate(limit.rate)}). Try again in "
            f"{describe_wait(wait)} with a valid token (POST /api/token/ with your username and password gives "
            "yours).")
