# One entry point for people and CI. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The reference broker is Apache Kafka (fetched from Maven Central on first use, cached in
# .cache/). `make test PHASEFLOW_TEST_BROKER=tansu` uses the embedded broker instead.
PHASEFLOW_TEST_BROKER ?= kafka
PYTEST_ARGS ?=
# `make test` runs the suite in this many pytest-xdist processes, each with its own broker and
# BigQuery emulator (started only if its tests need them). A file's tests stay together, in
# order, on one process (--dist loadfile): module-scoped workers and tests that restart a
# service see no other file's tests. PYTEST_WORKERS=0: one process, as plain `pytest`.
# The chaos suite (-m chaos: kills workers and brokers, measures recovery) runs after, alone in
# one process, so its recovery times are not inflated by the other files' load.
PYTEST_WORKERS ?= 3
# `make kafka PORT=19092 DATA_DIR=.kafka-data`: another port; a data directory kept across
# stop/start (default: a temporary one deleted on stop). `SASL_SSL=1`: a SASL_SSL listener too
# (docs/security.md).
PORT ?= 9092
DATA_DIR ?=
SASL_SSL ?=

.PHONY: setup demo test test-unit lint format typecheck imports check docs kafka clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	# bench.readiness's peer; --no-deps: see the comment on it in pyproject.toml
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps quixstreams
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/phaseflow demo

test: setup
	PHASEFLOW_TEST_BROKER=$(PHASEFLOW_TEST_BROKER) $(BIN)/pytest -m "not chaos" \
		-n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	@# Exit 5 (nothing selected: PYTEST_ARGS named no chaos test) is fine for this second step.
	PHASEFLOW_TEST_BROKER=$(PHASEFLOW_TEST_BROKER) $(BIN)/pytest -m chaos $(PYTEST_ARGS) \
		|| [ $$? -eq 5 ]

test-unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy

# The layers (.importlinter, docs/architecture.md) and no import cycle between any two modules.
imports: setup
	$(BIN)/lint-imports
	$(BIN)/python scripts/import_cycles.py

# Format check, lint, types, layers and the whole suite: the one command before pushing.
check: lint typecheck imports test

docs: setup
	$(BIN)/python scripts/update_settings_table.py

kafka: setup
	scripts/kafka-local run --port $(PORT) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)") $(if $(SASL_SSL),--sasl-ssl)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
