# Disco: two commands on a fresh machine.
#   make run   - set everything up, then serve http://127.0.0.1:8000 with the default tasks loaded
#   make test  - set everything up, then run the whole test suite (embedded mode, then PostgreSQL + Redis)
# Both share `make setup`. Settings come from the environment (see README, "Configuration").

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# daphne's WebSocket message limit: DISCO_WS_MAX_MESSAGE_BYTES (one 1 MiB update part + header room).
WS_LIMITS = $(shell $(PY) -m disco_site.limits)
# The services the second test pass talks to (already running on the project's machines).
SERVICES_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
SERVICES_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: setup run test lint bench bench-faults migrate worker-conversion worker-aggregation clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else "Python 3.11 or 3.12 is needed (TensorFlow 2.19); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	touch $@

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

migrate: setup
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py ensure_admin
	$(PY) manage.py load_default_tasks
	@echo "Disco is at http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/)"
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) $(WS_LIMITS) disco_site.asgi:application

worker-conversion: setup
	$(VENV)/bin/celery -A disco_site worker -Q conversion --concurrency 1 --loglevel INFO

# Every aggregation worker also runs the sweeper (aggregation/sweeper.py) that enforces all deadlines and
# timeouts; embedded (`make run` without REDIS_URL) the web process runs it.
worker-aggregation: setup
	$(VENV)/bin/celery -A disco_site worker -Q aggregation --loglevel INFO

# First pass: the mode the environment selects (embedded unless DATABASE_URL / REDIS_URL are set).
# Second pass: the tests marked both_modes, in the other mode. The faults suite needs PostgreSQL + Redis: it runs
# in the first pass under .ci/run (which sets both), else in the second pass (on the services); it skips itself
# in embedded mode.
ifeq ($(DATABASE_URL)$(REDIS_URL),)
OTHER_MODE := DATABASE_URL=$(SERVICES_DATABASE_URL) REDIS_URL=$(SERVICES_REDIS_URL)
OTHER_MARKERS := both_modes or faults
else
OTHER_MODE := DATABASE_URL= REDIS_URL=
OTHER_MARKERS := both_modes
endif

test: setup
	@test -x /usr/bin/chromium || { echo "Installing Debian's chromium for the browser tests"; \
		apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }; } \
		|| { echo "Browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; }
	@test -x /usr/sbin/nginx || { echo "Installing Debian's nginx for the reverse-proxy test (not started as a service)"; \
		apt-get install -y -qq nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx; }; } \
		|| { echo "The reverse-proxy test needs Debian's nginx: sudo apt-get install nginx"; exit 1; }
	$(VENV)/bin/ruff check .
	node --test tests/js/
	$(PY) -m pytest
	$(OTHER_MODE) $(PY) -m pytest -m "$(OTHER_MARKERS)"

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/convert.py

# Time to recover from each injected fault; needs PostgreSQL + Redis (the services by default).
bench-faults: setup
	DATABASE_URL=$${DATABASE_URL:-$(SERVICES_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(SERVICES_REDIS_URL)} \
		$(PY) bench/faults.py

clean:
	rm -rf $(VENV) node_modules staticfiles .pytest_cache
