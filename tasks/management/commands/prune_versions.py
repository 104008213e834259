"""Delete old model versions of a task (rows and files), keeping the newest and every version still in use."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks.models import Task
from tasks.versions import VersionError, delete_versions, prunable_versions


class Command(BaseCommand):
    help = ("Delete a task's old model versions and their files, keeping the newest --keep, the current one and "
            "the base of an open round. --dry-run lists what would go.")

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--task", action="append", dest="tasks", metavar="ID", help="a task id (repeatable)")
        target.add_argument("--all", action="store_true", help="every task")
        parser.add_argument("--keep", type=int, default=10, help="how many of the newest versions to keep (>= 1)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")

    def handle(self, *args, tasks: list[str] | None, all: bool, keep: int, dry_run: bool, **options) -> None:  # noqa: A002
        chosen = list(Task.objects.order_by("pk")) if all else []
        for task_id in tasks or []:
            task = Task.objects.filter(pk=task_id).first()
            if task is None:
                raise CommandError(f"No task with id '{task_id}'.")
            chosen.append(task)
        total = 0
        for task in chosen:
            try:
                versions = prunable_versions(task, keep) if dry_run else delete_versions(task, keep)
            except VersionError as exc:
                raise CommandError(str(exc)) from None
            verb = "would delete" if dry_run else "deleted"
            for v in versions:
                self.stdout.write(f"{task.pk}: {verb} version {v.number} ({v.origin}, {v.total_bytes:,} bytes, "
                                  f"{v.created_at:%Y-%m-%d %H:%M})")
            total += sum(v.total_bytes for v in versions)
            kept = task.versions.count() - (len(versions) if dry_run else 0)
            self.stdout.write(f"{task.pk}: {len(versions)} version(s) {verb}, {kept} kept.")
        self.stdout.write(f"{'Would free' if dry_run else 'Freed'} {total:,} bytes.")
