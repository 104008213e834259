"""The isolated conversion process: what it can reach, and how it is stopped.

A probe (``tests/isolation_probe.py``) takes the real child's place: it is started by the
real parent code with the real limits and confines itself with the real ``confine``, then
tries what a payload that got past the allow-list would try.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tasks import isolated_conversion
from tasks.isolated_conversion import convert_untrusted
from tasks.model_files.errors import UploadError
from tasks.model_files.isolation import landlock_abi
from tasks.models import ConversionJob
from tests.conftest import snapshot

PROBE = Path(__file__).resolve().parents[1] / "isolation_probe.py"


@pytest.fixture
def probe(monkeypatch):
    monkeypatch.setattr(isolated_conversion, "CHILD_SCRIPT", PROBE)


def _outcomes(name: str) -> dict[str, str]:
    with pytest.raises(UploadError) as caught:
        convert_untrusted("keras_h5", name, b"not read")
    return dict(line.split(": ", 1) for line in caught.value.problems)


@pytest.mark.skipif(not landlock_abi(), reason="this kernel has no Landlock")
def test_a_payload_in_the_conversion_process_reaches_nothing_of_value(probe, tmp_path, monkeypatch):
    secret = tmp_path / "secret_key"
    secret.write_text("the platform's secret")
    monkeypatch.setenv("SECRET_KEY", "canary-secret-in-the-parent")
    monkeypatch.setenv("DATABASE_URL", "postgres://canary@127.0.0.1/db")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        outcomes = _outcomes(f"escape:{secret}:{server.getsockname()[1]}")
    assert "landlock" in outcomes["protections"] and "seccomp" in outcomes["protections"]
    for attempt in ("read secret file", "read parent environ", "write outside job folder", "list project root",
                    "tcp connect", "unix socket"):
        assert outcomes[attempt].startswith("refused"), (attempt, outcomes[attempt])
    assert not (tmp_path / "written-by-probe").exists()
    # What it needs still works: its own folder, the Python installation.
    assert outcomes["write job folder"].startswith("ALLOWED")
    assert outcomes["read python stdlib"].startswith("ALLOWED")
    environment = set(outcomes["environment"].split(","))
    assert not environment & {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}


def test_a_conversion_that_never_ends_is_stopped_at_the_wall_clock_limit(probe, settings):
    settings.DISCO_CONVERSION_TIMEOUT = 3
    with pytest.raises(UploadError, match="took longer than 3 seconds and was stopped"):
        convert_untrusted("keras_h5", "sleep", b"")


def test_a_conversion_that_burns_cpu_is_stopped_at_the_cpu_limit(probe, settings):
    settings.DISCO_CONVERSION_CPU_SECONDS = 1
    with pytest.raises(UploadError, match="more than its 1 seconds of CPU time"):
        convert_untrusted("keras_h5", "spin", b"")


def test_a_conversion_that_hoards_memory_is_stopped_at_the_memory_limit(probe, settings):
    settings.DISCO_CONVERSION_MEMORY_MB = 256
    with pytest.raises(UploadError, match="needed more than its 256.0 MB of memory"):
        convert_untrusted("keras_h5", "memory", b"")


@pytest.mark.django_db(transaction=True)
def test_a_stopped_conversion_fails_its_job_with_the_reason_and_stores_nothing(probe, settings, media_root,
                                                                             make_task, tiny_artifacts):
    from tasks.versions import create_version
    from tests.tasks.test_keras_import import create_job, run_job, store_upload

    settings.DISCO_CONVERSION_TIMEOUT = 2
    task = make_task()
    create_version(task, tiny_artifacts, origin="initial")
    path = store_upload("keras_h5", "sleep", b"\x89HDF\r\n\x1a\n")
    job = create_job(task, "keras_h5", path)
    before, versions = snapshot(media_root), task.versions.count()
    job = run_job(job)
    assert job.status == ConversionJob.Status.FAILED
    assert "took longer than 2 seconds and was stopped" in job.message and "Traceback" not in job.message
    assert snapshot(media_root) == before and task.versions.count() == versions
