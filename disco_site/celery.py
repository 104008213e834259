"""The Celery application.

Two queues: ``conversion`` (TensorFlow, heavy) and ``aggregation`` (numpy only,
latency-critical), so each kind of worker scales on its own. Celery's
autodiscovery imports ``<app>.tasks``: the Celery tasks of the ``tasks`` app live
in ``tasks/tasks.py``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disco_site.settings")

app = Celery("disco_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
