"""Settings switch by environment: embedded defaults, PostgreSQL + Redis, and a clean deploy check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, django
from django.conf import settings
django.setup()
from disco_site.celery import app
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"], "db_name": str(settings.DATABASES["default"]["NAME"]),
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"], "eager": app.conf.task_always_eager,
    "broker": app.conf.broker_url, "debug": settings.DEBUG, "hosts": settings.ALLOWED_HOSTS,
    "media": str(settings.MEDIA_ROOT), "cache": settings.CACHES["default"]["BACKEND"],
}))
"""
CLEARED = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "MEDIA_ROOT", "STATIC_ROOT",
           "DISCO_SECRET_KEY_FILE")


def run_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    base["DJANGO_SETTINGS_MODULE"] = "disco_site.settings"
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True,
                          timeout=120)


def probe(**env: str) -> dict:
    result = run_with(env, "-c", PROBE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_defaults_need_no_services():
    found = probe()
    assert found["db"] == "django.db.backends.sqlite3" and found["db_name"].endswith("db.sqlite3")
    assert found["layer"] == "channels.layers.InMemoryChannelLayer"
    assert found["eager"] is False and found["broker"] == "memory://"  # disco_site.jobs runs them on a thread
    assert found["debug"] is True and "127.0.0.1" in found["hosts"]
    assert found["cache"] == "django.core.cache.backends.locmem.LocMemCache"  # one process counts alone


def test_services_are_chosen_by_environment_variables():
    found = probe(DATABASE_URL="postgres://postgres@127.0.0.1:5432/test", REDIS_URL="redis://127.0.0.1:6379/3",
                  MEDIA_ROOT="/srv/disco-media", ALLOWED_HOSTS="disco.example.org")
    assert found["db"] == "django.db.backends.postgresql" and found["db_name"] == "test"
    assert found["layer"] == "channels_redis.core.RedisChannelLayer"
    assert found["eager"] is False and found["broker"] == "redis://127.0.0.1:6379/3"
    assert found["media"] == "/srv/disco-media" and found["hosts"] == ["disco.example.org"]
    assert found["cache"] == "django.core.cache.backends.redis.RedisCache"  # every web process shares the counts


def test_debug_off_requires_a_secret_key():
    result = run_with({"DEBUG": "0"}, "-c", PROBE)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_deploy_check_is_clean_with_debug_off(tmp_path):
    env = {"DEBUG": "0", "SECRET_KEY": "x" * 60 + "-a-long-random-production-secret-key",
           "ALLOWED_HOSTS": "disco.example.org", "STATIC_ROOT": str(tmp_path)}
    result = run_with(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("module", ["disco_site.asgi"])
def test_asgi_application_routes_http_and_websocket(module):
    result = run_with({}, "-c", f"import {module} as m; print(sorted(m.application.application_mapping))")
    assert result.returncode == 0, result.stderr
    assert "['http', 'websocket']" in result.stdout


KEY_PROBE = "from django.conf import settings; print(settings.SECRET_KEY)"


def test_a_key_file_is_generated_once_with_mode_0600_and_reused(tmp_path):
    key_file = tmp_path / "keys" / ".secret_key"
    env = {"DISCO_SECRET_KEY_FILE": str(key_file)}
    first = run_with(env, "-c", KEY_PROBE)
    assert first.returncode == 0, first.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 50 and first.stdout.strip() == key
    second = run_with(env, "-c", KEY_PROBE)
    assert second.returncode == 0 and second.stdout.strip() == key  # sessions survive a restart
    assert [p.name for p in key_file.parent.iterdir()] == [".secret_key"]  # no temporary file left


def test_processes_starting_together_agree_on_one_key(tmp_path):
    key_file = tmp_path / ".secret_key"
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env = {**base, "DJANGO_SETTINGS_MODULE": "disco_site.settings", "DISCO_SECRET_KEY_FILE": str(key_file)}
    procs = [subprocess.Popen([sys.executable, "-c", KEY_PROBE], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    keys = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert keys == {key_file.read_text().strip()}


def test_the_environment_key_wins_and_writes_no_file(tmp_path):
    key_file = tmp_path / ".secret_key"
    result = run_with({"SECRET_KEY": "k" * 50, "DISCO_SECRET_KEY_FILE": str(key_file)}, "-c", KEY_PROBE)
    assert result.returncode == 0 and result.stdout.strip() == "k" * 50
    assert not key_file.exists()


def test_debug_off_never_generates_a_key_but_reads_a_given_file(tmp_path):
    key_file = tmp_path / ".secret_key"
    refused = run_with({"DEBUG": "0", "DISCO_SECRET_KEY_FILE": str(key_file)}, "-c", KEY_PROBE)
    assert refused.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in refused.stderr
    assert not key_file.exists()
    key_file.write_text("s" * 60 + "\n")
    accepted = run_with({"DEBUG": "0", "DISCO_SECRET_KEY_FILE": str(key_file)}, "-c", KEY_PROBE)
    assert accepted.returncode == 0 and accepted.stdout.strip() == "s" * 60


def test_the_aggregation_soft_time_limit_must_be_below_the_hard_one():
    result = run_with({"DISCO_AGGREGATION_SOFT_TIME_LIMIT": "60", "DISCO_AGGREGATION_TIME_LIMIT": "60"}, "-c", PROBE)
    assert result.returncode != 0 and "must be above 0 and below DISCO_AGGREGATION_TIME_LIMIT" in result.stderr


POOL_PROBE = """
import json, os, sys
import disco_site.asgi
from django.conf import settings
print(json.dumps({"pool": settings.DATABASES["default"].get("OPTIONS", {}).get("pool"),
                  "left_in_environment": os.environ.get("DISCO_DB_POOL")}))
"""


def test_web_processes_pool_their_postgresql_connections_and_their_children_do_not_inherit_it():
    pg = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test", "REDIS_URL": "redis://127.0.0.1:6379/3",
          "DISCO_HEARTBEAT_SECONDS": "0", "DISCO_SWEEP_SECONDS": "0"}
    result = run_with(pg, "-c", POOL_PROBE)
    assert result.returncode == 0, result.stderr
    web = json.loads(result.stdout.strip().splitlines()[-1])
    assert web["pool"] and web["pool"]["max_size"] >= 1
    assert web["left_in_environment"] is None  # a Celery worker started from here gets no pool (prefork)
    worker = run_with(pg, "-c", "import django; from django.conf import settings; django.setup(); "
                                "print(settings.DATABASES['default'].get('OPTIONS', {}).get('pool'))")
    assert worker.stdout.strip().splitlines()[-1] == "None", worker.stderr
    assert run_with({**pg, "DISCO_DB_POOL": "0"}, "-c", POOL_PROBE).stdout.strip().endswith(
        '{"pool": null, "left_in_environment": "0"}')
