"""The Celery application.

Two queues: ``conversion`` (TensorFlow, heavy) and ``aggregation`` (numpy only,
latency-critical), so each kind of worker scales on its own. Celery's
autodiscovery imports ``<app>.tasks``: the Celery tasks of the ``tasks`` app live
in ``tasks/tasks.py``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disco_site.settings")
# Celery's Django fix-up runs Django's system checks when a worker starts, importing every
# URLconf, view, template tag library and admin module into a process that needs none of
# them (about 30 MiB in the aggregation worker). `manage.py migrate` runs the checks already.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("disco_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
