# SellerVault: `make demo` runs it, `make test` proves it. Both set up .venv themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo test lint bench clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP) ## Run SellerVault on the embedded default (SQLite, local key, self-signed TLS)
	$(BIN)/sellervault demo --data-dir var/demo

# One worker more than there are cores (at most 5): the tests wait on sleeps, subprocesses,
# sockets and fsync, and a third worker on two cores fills that (508 s against 532 s for the
# same suite here). Each test file whole on one worker: a file's module-scoped server and
# databases are made once, in the order tests/conftest.py sorts them (the longest first:
# xdist's own order, the files with most tests first, started the ten-minute fuzz last).
# Every worker has its own databases, Redis keys and ports.
WORKERS ?= $(shell $(PYTHON) -c "import os; print(min((os.cpu_count() or 1) + 1, 5))")
test: $(STAMP) ## Run the whole test suite (SQLite and PostgreSQL, real TLS server)
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

bench: $(STAMP) ## Benchmarks, each a ratio against a baseline run beside it
	$(BIN)/python bench/ingest.py --db sqlite
	$(BIN)/python bench/ingest.py --db postgresql
	$(BIN)/python bench/reveal.py --db sqlite
	$(BIN)/python bench/reveal.py --db postgresql
	$(BIN)/python bench/import_memory.py
	$(BIN)/python bench/authz.py --db sqlite
	$(BIN)/python bench/authz.py --db postgresql
	$(BIN)/python bench/login_lockout.py --db sqlite
	$(BIN)/python bench/login_lockout.py --db postgresql --redis redis://127.0.0.1:6379/0
	$(BIN)/python bench/audit_log.py --db sqlite
	$(BIN)/python bench/audit_log.py --db postgresql
	$(BIN)/python bench/detectors.py --db sqlite
	$(BIN)/python bench/detectors.py --db postgresql

clean: ## Remove the venv and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
