"""django-axes' counting backend, for requests only.

``authenticate()`` without a request (a management command, the shell, the test client's
``login``) has no client address to count against; axes would refuse it outright. Here it
is passed on to the next backend. Every log-in over HTTP (the log-in page, the admin's,
``POST /api/token/``) carries its request and is counted.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend


class LoginAttemptsBackend(AxesStandaloneBackend):
    def authenticate(self, request: Any, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
