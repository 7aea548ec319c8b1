# Two commands for a fresh machine: `make demo` and `make test`. Both create and use .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= pharmalab-demo
PYTEST_ARGS ?=

.PHONY: demo test test-bigquery lint lock bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs are keyed on the lock files: a changed lock reinstalls, an unchanged one is a no-op.
$(VENV)/.installed-demo: requirements/demo.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/demo.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements/dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(BIN)/pharmalab demo --out $(OUT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The BigQuery emulator suite (not in `make test`): bqemulator in its own venv, with its
# spatial extension installed from its wheel (the emulator would download it), and the
# BigQuery client libraries (pharmalab[bigquery]) in .venv.
.venv-bqemulator/bin/bqemulator: requirements/bqemulator.txt
	$(PYTHON) -m venv .venv-bqemulator
	.venv-bqemulator/bin/python -m pip install --quiet -r requirements/bqemulator.txt
	.venv-bqemulator/bin/python -c "from duckdb_extensions import import_extension; import_extension('spatial')"
	touch $@

test-bigquery: $(VENV)/.installed-dev .venv-bqemulator/bin/bqemulator
	$(BIN)/python -m pip install --quiet -e '.[bigquery]'
	$(BIN)/python -m pytest -m bigquery_emulator $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks tools

# Regenerate the lock files after changing dependencies in pyproject.toml.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header -o requirements/dev.lock
	$(BIN)/uv pip compile pyproject.toml --extra demo --python-version 3.11 --no-header -c requirements/dev.lock -o requirements/demo.lock

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/cdm_load.py
	$(BIN)/python benchmarks/characterize.py
	$(BIN)/python benchmarks/forecast_pbs.py
	$(BIN)/python benchmarks/supply.py
	$(BIN)/python benchmarks/marketing.py

clean:
	rm -rf $(VENV) .venv-bqemulator $(OUT) .pytest_cache .pharmalab
