"""``manage.py load_default_tasks``: put every provider's task in the catalogue, with a model.

Idempotent: run it as often as you like; tasks that exist keep their edits (unless
``--update``) and tasks that have a model get no new conversion.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks.catalogue import load_provider_task
from tasks.models import ConversionJob
from tasks.providers import all_providers


class Command(BaseCommand):
    help = "Create the predefined (and registered) tasks and convert their models to TF.js. Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", nargs="+", metavar="TASK_ID", help="Load only these task ids.")
        parser.add_argument("--update", action="store_true", help="Overwrite existing tasks' settings with the code's.")
        parser.add_argument("--unpublished", action="store_true", help="Create new tasks unpublished.")
        parser.add_argument("--no-wait", action="store_true", help="Queue conversions and return at once.")
        parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait for conversions (default 900).")

    def handle(self, *args, only: list[str] | None, update: bool, unpublished: bool, no_wait: bool, timeout: float,
               **options) -> None:
        providers = all_providers()
        if only:
            unknown = sorted(set(only) - set(providers))
            if unknown:
                raise CommandError(f"Unknown task ids: {', '.join(unknown)}. Known: {', '.join(sorted(providers))}.")
            providers = {k: v for k, v in providers.items() if k in only}
        jobs: list[ConversionJob] = []
        for task_id, provider in providers.items():
            try:
                result = load_provider_task(provider, update=update, publish=not unpublished)
            except ValidationError as exc:
                raise CommandError(f"Task {task_id!r} from its provider is invalid: {exc.message_dict}") from exc
            state = "created" if result.created else "exists"
            if result.job is not None:
                jobs.append(result.job)
                self.stdout.write(f"{task_id}: {state}; model conversion {result.job.status}")
            else:
                version = result.task.current_version
                self.stdout.write(f"{task_id}: {state}; current model version "
                                  f"{version.number if version else 'none (conversion in progress)'}")
        if jobs and not no_wait:
            self._wait(jobs, timeout)

    def _wait(self, jobs: list[ConversionJob], timeout: float) -> None:
        started = time.monotonic()
        deadline = started + timeout
        pending = {job.pk for job in jobs}
        hinted = not settings.REDIS_URL  # embedded: the jobs run in this process
        while pending:
            for job in ConversionJob.objects.filter(pk__in=pending).exclude(
                    status__in=[ConversionJob.Status.QUEUED, ConversionJob.Status.RUNNING]):
                pending.discard(job.pk)
                line = f"{job.task_id}: conversion {job.status}: {job.message}"
                self.stdout.write(self.style.SUCCESS(line) if job.status == job.Status.DONE else self.style.ERROR(line))
            if not pending:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"{len(pending)} conversion(s) still unfinished after {timeout:.0f} s. "
                                   "Is a conversion worker running? `celery -A disco_site worker -Q conversion`")
            if not hinted and time.monotonic() - started > 30:
                self.stdout.write("Still waiting for a conversion worker (celery -A disco_site worker -Q conversion)…")
                hinted = True
            time.sleep(0.5)
        failed = ConversionJob.objects.filter(pk__in=[j.pk for j in jobs], status=ConversionJob.Status.FAILED).count()
        if failed:
            raise CommandError(f"{failed} conversion(s) failed; see the messages above or the admin's conversion jobs.")
