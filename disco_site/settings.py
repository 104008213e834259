"""Settings for Disco, read from the environment.

With nothing set, the platform runs embedded: SQLite, the in-memory channel layer
and Celery tasks executed in-process. ``DATABASE_URL`` switches to PostgreSQL (or
any database dj-database-url understands); ``REDIS_URL`` switches the channel
layer to channels-redis and Celery to a real broker served by workers.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

from disco_site.limits import ws_max_message_bytes
from disco_site.secret_key import load_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str = "") -> str:
    """An environment variable, where an empty value counts as unset."""
    return os.environ.get(name) or default


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if not value:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _env_bool("DEBUG", True)
# No built-in key: SECRET_KEY, else DISCO_SECRET_KEY_FILE (default .secret_key, generated on first use
# only with DEBUG on). With DEBUG off and neither, the platform refuses to start (disco_site.secret_key).
SECRET_KEY = load_secret_key(env_key=_env("SECRET_KEY"), key_file=_env("DISCO_SECRET_KEY_FILE"),
                             default_file=BASE_DIR / ".secret_key", debug=DEBUG)

ALLOWED_HOSTS = [h.strip() for h in _env("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in _env("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

# "daphne" is deliberately not an app: it would only swap in an ASGI runserver, and would load
# Twisted into every process (Celery workers included). `make run` starts daphne itself.
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "channels",
    "axes",
    "tasks.apps.TasksConfig",
    "aggregation.apps.AggregationConfig",
    "accounts.apps.AccountsConfig",
]

MIDDLEWARE = [
    # First, so that static files and error pages carry the Content-Security-Policy too.
    "disco_site.security_headers.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a refused log-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Sent by SecurityMiddleware on every response (Django's defaults, stated here on purpose); the
# Content-Security-Policy comes from disco_site/security_headers.py.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "disco_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "disco_site.asgi.application"

DATABASE_URL = _env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads write (requests, in-process jobs): take the write lock when a transaction
    # begins and wait for it, instead of failing with "database is locked" on a read->write upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL;")

# Web processes pool their PostgreSQL connections (disco_site/asgi.py turns this on). Without a pool every
# consumer message opens a new connection (Channels closes it after each database_sync_to_async call): at 500
# participants that was about a third of daphne's CPU. Not persistent connections (CONN_MAX_AGE): under ASGI every
# HTTP request runs in its own thread, whose connection would outlive it. Not in Celery's prefork workers either:
# a pool's threads and sockets do not survive the fork.
DISCO_DB_POOL = _env_bool("DISCO_DB_POOL", False)
if DISCO_DB_POOL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": int(_env("DISCO_DB_POOL_SIZE", "8")), "timeout": 30}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# With DEBUG on, WhiteNoise serves straight from the finders: no collectstatic needed.
STATIC_ROOT = Path(_env("STATIC_ROOT", str(BASE_DIR / "staticfiles"))) if not DEBUG or _env("STATIC_ROOT") else None
NODE_MODULES = BASE_DIR / "node_modules"
# Browser libraries come from npm (package-lock.json) and are served by us, never by a CDN.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/tfjs", NODE_MODULES / "@tensorflow" / "tfjs" / "dist"),
    ("vendor/pico", NODE_MODULES / "@picocss" / "pico" / "css"),
    ("vendor/tfjs-backend-wasm", NODE_MODULES / "@tensorflow" / "tfjs-backend-wasm" / "dist"),
    ("vendor/tfjs-backend-webgpu", NODE_MODULES / "@tensorflow" / "tfjs-backend-webgpu" / "dist"),
    ("vendor/chartjs", NODE_MODULES / "chart.js" / "dist"),
    ("vendor/papaparse", NODE_MODULES / "papaparse"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

MEDIA_ROOT = Path(_env("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "media/"
# Large uploads and federated updates sent in parts are spooled here, beside the media, so
# that storing one is a rename rather than a copy.
FILE_UPLOAD_TEMP_DIR = _env("FILE_UPLOAD_TEMP_DIR", str(MEDIA_ROOT / ".incoming"))
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
# The first handler counts every file's bytes and stops an upload past DISCO_MAX_MODEL_BYTES while it
# streams (tasks.upload_limit); the others are Django's defaults.
FILE_UPLOAD_HANDLERS = [
    "tasks.upload_limit.ModelUploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- Limits on log-in, sign-up, API tokens and task creation (counted in the cache below) --
# django-axes refuses a username from one address after DISCO_LOGIN_FAILURE_LIMIT wrong passwords,
# for DISCO_LOGIN_COOLOFF_MINUTES. Its backend comes first and only counts; ModelBackend logs in.
AUTHENTICATION_BACKENDS = [
    "accounts.backends.LoginAttemptsBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = int(_env("DISCO_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(_env("DISCO_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "disco_site.throttling.client_address"
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_VERBOSE = False
# New accounts per client address, and DRF's scoped rates ("count/second|minute|hour|day").
DISCO_SIGNUP_RATE = _env("DISCO_SIGNUP_RATE", "5/hour")
DISCO_API_AUTH_RATE = _env("DISCO_API_AUTH_RATE", "10/minute")
DISCO_TASK_CREATE_RATE = _env("DISCO_TASK_CREATE_RATE", "20/hour")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tasks:mine"
LOGOUT_REDIRECT_URL = "home"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "disco_site.throttling.ThrottledTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "tasks.api.exception_handler",
    # "auth": token requests and wrong tokens per address; "task_create": new tasks per user.
    "DEFAULT_THROTTLE_RATES": {"auth": DISCO_API_AUTH_RATE, "task_create": DISCO_TASK_CREATE_RATE},
}

# --- Redis: channel layer and Celery broker -------------------------------------------
REDIS_URL = _env("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds the limits' counters: one process's memory when embedded, Redis (shared by every
# web process) otherwise.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "disco"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "disco"}}
    # axes.W001 warns that a per-process cache cannot share counters between processes; embedded mode
    # runs one web process, so it does not need to.
    SILENCED_SYSTEM_CHECKS = ["axes.W001"]

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
# Embedded mode has no broker: disco_site.jobs runs queued tasks on a thread of this process.
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
# Every task acknowledged late is idempotent (its row is the source of truth): when a worker child is
# killed (OOM, hard time limit) the task goes back to the queue instead of being acknowledged and lost.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task a worker took but never acknowledged (the whole worker died) goes back to the queue after this.
# It must be longer than the longest task may run (the conversion's hard limit, DISCO_CONVERSION_TIMEOUT
# + 120 s), or a slow but alive task is delivered a second time while it runs. The code schedules no
# countdown or ETA tasks (deadlines are columns the sweeper enforces), so nothing else bounds it.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(_env("DISCO_BROKER_VISIBILITY_TIMEOUT", "3600"))}
# Aggregation runs at most this long: past the soft limit the round fails with a reason and nothing is
# written; at the hard limit a prefork worker kills the task. Soft must be below hard.
DISCO_AGGREGATION_SOFT_TIME_LIMIT = int(_env("DISCO_AGGREGATION_SOFT_TIME_LIMIT", "300"))
DISCO_AGGREGATION_TIME_LIMIT = int(_env("DISCO_AGGREGATION_TIME_LIMIT", "360"))
if not 0 < DISCO_AGGREGATION_SOFT_TIME_LIMIT < DISCO_AGGREGATION_TIME_LIMIT:
    raise ValueError(f"DISCO_AGGREGATION_SOFT_TIME_LIMIT ({DISCO_AGGREGATION_SOFT_TIME_LIMIT} s) must be above 0 and "
                     f"below DISCO_AGGREGATION_TIME_LIMIT ({DISCO_AGGREGATION_TIME_LIMIT} s), so that a slow "
                     "aggregation can fail cleanly before its worker is killed.")
# The aggregation rules read the round's updates a block of coordinates at a time (aggregation.frames):
# one block of N updates takes at most this many bytes, with the rule's temporaries (median's copy,
# Krum's float64 copy) counted in, so the worker's memory does not grow with N x P.
DISCO_AGGREGATION_BLOCK_BYTES = int(_env("DISCO_AGGREGATION_BLOCK_BYTES", str(64 << 20)))
if DISCO_AGGREGATION_BLOCK_BYTES < 1 << 16:
    raise ValueError(f"DISCO_AGGREGATION_BLOCK_BYTES ({DISCO_AGGREGATION_BLOCK_BYTES}) must be at least 65536.")
# A conversion job waits for its isolated process (DISCO_CONVERSION_TIMEOUT) and then stores the
# result: the soft limit leaves it time to record a failure, the hard limit ends a stuck worker child.
CELERY_TASK_ANNOTATIONS = {
    name: {"soft_time_limit": int(_env("DISCO_CONVERSION_TIMEOUT", "600")) + 60,
           "time_limit": int(_env("DISCO_CONVERSION_TIMEOUT", "600")) + 120}
    for name in ("tasks.tasks.convert_uploaded_model", "tasks.tasks.convert_provider_model")
}
CELERY_TASK_ROUTES = {
    "tasks.tasks.*": {"queue": "conversion"},
    "aggregation.tasks.*": {"queue": "aggregation"},
}

# --- Durable time: one periodic sweeper (aggregation.sweeper) enforces every deadline column --------
# How often it runs: in every aggregation worker (a thread started when the worker is ready) and,
# embedded, in the web process. 0 turns the web process's sweeper off (the tests call sweep() themselves).
DISCO_SWEEP_SECONDS = float(_env("DISCO_SWEEP_SECONDS", "5"))
# A round still aggregating this long after it started (or was re-queued) is re-queued once, then failed.
DISCO_AGGREGATION_STUCK_AFTER = int(_env("DISCO_AGGREGATION_STUCK_AFTER",
                                         str(DISCO_AGGREGATION_TIME_LIMIT + 60)))
# A conversion job still running this long after it started is re-queued once, then failed.
DISCO_CONVERSION_STUCK_AFTER = int(_env("DISCO_CONVERSION_STUCK_AFTER",
                                        str(int(_env("DISCO_CONVERSION_TIMEOUT", "600")) + 180)))
# Each web process refreshes the last_seen of the participants it serves every DISCO_HEARTBEAT_SECONDS
# (0: never); one not refreshed for DISCO_PARTICIPANT_SILENT_AFTER seconds (its process died) is
# disconnected by the sweeper.
DISCO_HEARTBEAT_SECONDS = float(_env("DISCO_HEARTBEAT_SECONDS", "30"))
DISCO_PARTICIPANT_SILENT_AFTER = int(_env("DISCO_PARTICIPANT_SILENT_AFTER", "120"))
if DISCO_HEARTBEAT_SECONDS and DISCO_PARTICIPANT_SILENT_AFTER <= 2 * DISCO_HEARTBEAT_SECONDS:
    raise ValueError(f"DISCO_PARTICIPANT_SILENT_AFTER ({DISCO_PARTICIPANT_SILENT_AFTER} s) must be more than twice "
                     f"DISCO_HEARTBEAT_SECONDS ({DISCO_HEARTBEAT_SECONDS} s), or live participants are disconnected.")

# --- Disco settings ---------------------------------------------------------------------
# Extra TaskProvider classes or instances, as dotted paths, loaded next to the predefined ones.
DISCO_TASK_PROVIDERS: list[str] = [p.strip() for p in _env("DISCO_TASK_PROVIDERS").split(",") if p.strip()]
# The largest model (all files together) the platform stores or exchanges, in bytes.
DISCO_MAX_MODEL_BYTES = int(_env("DISCO_MAX_MODEL_BYTES", str(200 * 1024 * 1024)))
# Unfinished federated updates (announced, parts still arriving) of one task spool at most this many
# bytes in each web process; an announcement over it is refused and the client asked to retry.
DISCO_MAX_SPOOLED_BYTES_PER_TASK = int(_env("DISCO_MAX_SPOOLED_BYTES_PER_TASK", str(1024 * 1024 * 1024)))
# A web process lets at most this many announced updates be sent to it at once (aggregation.upload_slots);
# the others are sent when their turn comes. A granted upload with no part for the idle time is dropped.
DISCO_UPLOAD_SLOTS = int(_env("DISCO_UPLOAD_SLOTS", "16"))
# An update of at least this many bytes is large: the welcome asks clients to announce it and wait for their slot
# (its ``announceFrom``), and one sent as a single frame anyway is written to disk before it is checked.
DISCO_ANNOUNCE_FROM_BYTES = int(_env("DISCO_ANNOUNCE_FROM_BYTES", str(64 * 1024)))
DISCO_UPLOAD_IDLE_SECONDS = float(_env("DISCO_UPLOAD_IDLE_SECONDS", "30"))
# Stored updates of finished federated rounds are deleted once the next version is committed,
# except those of this many most recent finished rounds (kept for audit; 0 keeps none).
DISCO_KEEP_CONTRIBUTION_ROUNDS = int(_env("DISCO_KEEP_CONTRIBUTION_ROUNDS", "2"))
# The largest WebSocket message daphne accepts (its --websocket-max-message-size/-frame-size, set
# from this by `make run`): one update part of 1 MiB plus header room; updates go in parts.
DISCO_WS_MAX_MESSAGE_BYTES = ws_max_message_bytes()
# Uploaded Keras files are converted in a separate, confined process (tasks.isolated_conversion)
# with these limits: CPU seconds, memory (address space) in MiB, wall-clock seconds.
DISCO_CONVERSION_CPU_SECONDS = int(_env("DISCO_CONVERSION_CPU_SECONDS", "300"))
DISCO_CONVERSION_MEMORY_MB = int(_env("DISCO_CONVERSION_MEMORY_MB", "4096"))
DISCO_CONVERSION_TIMEOUT = int(_env("DISCO_CONVERSION_TIMEOUT", "600"))
# Where each conversion gets its private folder (the system's temporary folder by default).
DISCO_CONVERSION_TEMP_DIR = _env("DISCO_CONVERSION_TEMP_DIR")
# Refuse to convert where the kernel cannot confine the process with Landlock (Linux 5.13+).
DISCO_CONVERSION_REQUIRE_LANDLOCK = _env_bool("DISCO_CONVERSION_REQUIRE_LANDLOCK", False)
# A WebSocket that has not sent its "join" message this many seconds after connecting is closed.
DISCO_JOIN_TIMEOUT_SECONDS = float(_env("DISCO_JOIN_TIMEOUT_SECONDS", "30"))
# Publish contributors' new tasks at once instead of waiting for an administrator.
DISCO_AUTO_PUBLISH = _env_bool("DISCO_AUTO_PUBLISH", False)
# Caps on one task's WebSocket participants (both schemes): connected at once, and connected at once from one
# client address (scope["client"]: behind a proxy, run daphne with --proxy-headers). 0 means no cap.
DISCO_MAX_PARTICIPANTS_PER_TASK = int(_env("DISCO_MAX_PARTICIPANTS_PER_TASK", "1000"))
DISCO_MAX_CONNECTIONS_PER_ADDRESS = int(_env("DISCO_MAX_CONNECTIONS_PER_ADDRESS", "64"))
# WebRTC ICE servers for decentralized peers, as JSON, e.g. [{"urls": "stun:stun.example.org:3478"}]
# (RTCIceServer objects; none are needed on one machine or one LAN).
try:
    DISCO_ICE_SERVERS: list[dict] = json.loads(_env("DISCO_ICE_SERVERS", "[]"))
except json.JSONDecodeError as _exc:
    raise ValueError(f"DISCO_ICE_SERVERS must be a JSON list of ICE servers, e.g. "
                     f"'[{{\"urls\": \"stun:stun.example.org:3478\"}}]' ({_exc}).") from None

# --- Deployment hardening (``manage.py check --deploy`` is clean with DEBUG off) ----------
if not DEBUG:
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(_env("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": _env("LOG_LEVEL", "INFO")},
}
