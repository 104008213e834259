"""manage.py prune_versions: old versions go (rows and files), what is still in use stays."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from aggregation.models import Round
from tasks.models import ConversionJob, ModelVersion
from tasks.versions import create_version, set_current_version
from tests.conftest import snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def six(make_task, tiny_artifacts, other_tiny_artifacts):
    """Six versions; current is 3 (rolled back); an open round starts from 2; a finished round went 1 -> 2."""
    task = make_task("six")
    versions = [create_version(task, tiny_artifacts if n % 2 else other_tiny_artifacts, origin="upload")
                for n in range(1, 7)]
    set_current_version(task, 3)
    v = {n: versions[n - 1] for n in range(1, 7)}
    Round.objects.create(task=task, number=1, base_version=v[1], result_version=v[2], status=Round.Status.CLOSED,
                         deadline=timezone.now())
    Round.objects.create(task=task, number=2, base_version=v[2], deadline=timezone.now() + timedelta(minutes=2))
    ConversionJob.objects.create(task=task, source="upload", status=ConversionJob.Status.DONE, result=v[1])
    return task, v


def run(*args: str) -> str:
    out = StringIO()
    call_command("prune_versions", *args, stdout=out)
    return out.getvalue()


def test_dry_run_lists_and_deletes_nothing(six, media_root):
    task, _ = six
    before = snapshot(media_root)
    out = run("--task", "six", "--keep", "2", "--dry-run")
    assert "six: would delete version 1 (upload" in out and "six: would delete version 4 (upload" in out
    assert "six: 2 version(s) would delete, 4 kept." in out
    assert "version 2 " not in out and "version 3 " not in out and "version 5" not in out
    assert snapshot(media_root) == before and task.versions.count() == 6


def test_old_versions_go_with_their_files_and_references_are_cleared(six, media_root,
                                                                     django_capture_on_commit_callbacks):
    task, v = six
    with django_capture_on_commit_callbacks(execute=True):
        out = run("--task", "six", "--keep", "2")
    assert "six: 2 version(s) deleted, 4 kept." in out
    # Kept: the newest two (6, 5), the current one (3) and the open round's base (2).
    assert sorted(task.versions.values_list("number", flat=True)) == [2, 3, 5, 6]
    for n in (1, 4):
        assert not (media_root / v[n].storage_dir).exists()
    for n in (2, 3, 5, 6):
        assert (media_root / v[n].storage_dir / "model.json").is_file()
    finished = Round.objects.get(task=task, number=1)
    assert finished.base_version_id is None and finished.result_version_id == v[2].pk
    assert ConversionJob.objects.get(task=task).result_id is None
    assert ModelVersion.objects.get(pk=v[2].pk).parent_id is None
    task.refresh_from_db()
    assert task.current_version_id == v[3].pk
    # A second run has nothing left to do; the next version still gets a new number.
    with django_capture_on_commit_callbacks(execute=True):
        assert "0 version(s) deleted" in run("--all", "--keep", "2")


def test_the_newest_version_is_always_kept(six):
    with pytest.raises(CommandError, match="Keep at least the newest version"):
        run("--task", "six", "--keep", "0")
    with pytest.raises(CommandError, match="No task with id 'nope'"):
        run("--task", "nope")
    set_current_version(six[0], 1)
    run("--task", "six", "--keep", "1")
    assert sorted(six[0].versions.values_list("number", flat=True)) == [1, 2, 6]
