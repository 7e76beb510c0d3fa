# Two commands: `make run` and `make test`. Everything else they need is set up here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run demo test test-fast lint typecheck pytest services system-packages bench reliability-report chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime

# OpenCode, the internal agents' coding engine, from the npm registry (ARCHITECTURE.md §6).
OPENCODE_VERSION := 1.18.33
OPENCODE := .opencode/node_modules/opencode-linux-x64/bin/opencode

$(OPENCODE):
	mkdir -p .opencode
	cd .opencode && npm install --silent --ignore-scripts --no-audit --no-fund --no-save opencode-linux-x64@$(OPENCODE_VERSION)
	test -x $@

run: $(VENV)/.runtime $(OPENCODE)
	$(BIN)/orchestrator migrate
	OPENCODE_BIN=$${OPENCODE_BIN:-$(CURDIR)/$(OPENCODE)} $(BIN)/orchestrator serve --host $(HOST) --port $(PORT)

# A sample session through OpenCode with the scripted model: no API key needed.
demo: $(VENV)/.runtime $(OPENCODE)
	OPENCODE_BIN=$${OPENCODE_BIN:-$(CURDIR)/$(OPENCODE)} $(BIN)/orchestrator demo --host $(HOST) --port $(PORT)

# PostgreSQL and Redis must be up for the storage tests; start them if they are not.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
	@for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done

# Debian's packages the tests drive: Chromium for the dashboard's browser tests
# (Playwright drives it; it never downloads a browser of its own) with a colour emoji font
# for the state badges, docker-compose to validate the compose file (no daemon needed),
# and HAProxy in front of `orchestrator cluster`'s replicas.
SYSTEM_PACKAGES := chromium fonts-noto-color-emoji docker-compose haproxy
SUDO := $(shell test "$$(id -u)" -eq 0 || echo sudo)
system-packages:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); }; }

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/lint-imports

typecheck: $(VENV)/.dev
	$(BIN)/mypy

# Three workers on this 2-core machine: most tests wait on server processes, git or
# sockets, not the CPU (the whole suite in 443 s with three, 513 s with two, same day).
# The tests that kill PostgreSQL or Redis kill servers of their own, so none runs apart.
PYTEST_WORKERS ?= 3
pytest: $(VENV)/.dev services system-packages $(OPENCODE)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

test: lint typecheck pytest

# The fast tier (tests marked `fast`): the pure domain rules, the contract suite on the
# in-memory unit of work, and the services and runtime tests that run on it with a fake
# clock. No database, Redis or server process; prints how long it took.
test-fast: $(VENV)/.dev
	@start=$$(date +%s.%N); \
	$(BIN)/pytest -q -m fast tests/domain tests/contracts tests/services tests/runtime; \
	status=$$?; \
	echo "test-fast took $$(awk "BEGIN { printf \"%.1f\", $$(date +%s.%N) - $$start }") s"; \
	exit $$status

bench: $(VENV)/.dev services $(OPENCODE)
	$(BIN)/python bench/transitions.py
	$(BIN)/python bench/websocket_fanout.py --backend sqlite
	$(BIN)/python bench/websocket_fanout.py --backend postgresql
	$(BIN)/python bench/eap_claims.py
	$(BIN)/python bench/eap_requests.py
	$(BIN)/python bench/engine_sessions.py
	$(BIN)/python bench/fleet_start.py
	$(BIN)/python bench/idle_sessions.py
	$(BIN)/python bench/opencode_overhead.py
	$(BIN)/python bench/learned_routing.py

# Runs tests/reliability and tests/security and writes their figures to docs/reliability.md.
reliability-report: $(VENV)/.dev services system-packages $(OPENCODE)
	$(BIN)/python bench/reliability_report.py

# The fault suites pushed harder than in `make test`: CHAOS_SCALE times the kills, the
# sessions and the outage times (20 SIGKILLs over 8,000 sessions, a 12 s database outage...).
CHAOS_SCALE ?= 4
CHAOS_SUITES := tests/reliability/test_crash_during_creation.py \
	tests/reliability/test_database_outage.py tests/reliability/test_redis_outage.py
chaos: $(VENV)/.dev services
	CI=true CHAOS_SCALE=$(CHAOS_SCALE) $(BIN)/pytest $(CHAOS_SUITES) -s --timeout 3600

clean:
	rm -rf $(VENV) .opencode .orchestrator .pytest_cache .mypy_cache .ruff_cache
