"""Disco on Django: the project package (settings, ASGI routing, Celery app)."""

from .celery import app as celery_app

__all__ = ["celery_app"]
