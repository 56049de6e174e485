# Two commands on a fresh machine: `make run` serves, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit tools bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,vw]'
	touch $@

# Migrates var/bandit_router.db (SQLite), then serves the default pool on 127.0.0.1:8000.
run: $(BIN)/.installed
	$(BIN)/bandit-router serve --host 127.0.0.1 --port 8000

test: lint typecheck unit

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# What the tests drive besides Python, from Debian's packages when missing; never skipped:
# kubectl renders deploy/k8s (tests/test_deploy.py), chromium runs the dashboard's browser test.
tools:
	@command -v kubectl >/dev/null || { command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq kubernetes-client; } || true
	@command -v chromium >/dev/null || \
	  { $$(test "$$(id -u)" = 0 || echo sudo) apt-get update -qq && \
	    $$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y -qq chromium; }

# The PostgreSQL tests need the server on 127.0.0.1:5432: start it when it is installed but down.
unit: $(BIN)/.installed tools
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
	  { command -v pg_ctlcluster >/dev/null && \
	    pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; } || true
	$(BIN)/pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m bench.route_throughput
	$(BIN)/python -m bench.route_parts
	$(BIN)/python -m bench.replay_speed
	$(BIN)/python -m bench.vw_choose
	$(BIN)/python -m bench.learner_throughput
	$(BIN)/python -m bench.escalation_route
	$(BIN)/python -m bench.feedback_loop

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
