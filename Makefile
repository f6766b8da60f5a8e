# ePay: `make run` starts the whole stack, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test chaos record-histories screenshots lint install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m epay.devstack

test: install
	$(BIN)/pytest -q

chaos: install
	$(BIN)/python -m tests.chaos --payments 300

# Record the workflow histories every release must replay (tests/histories/, docs/design.md).
record-histories: install
	$(BIN)/pytest -q -p no:cacheprovider tests/histories/record.py

# Refresh the runbook's screenshots of the Temporal UI (docs/images/, docs/operations.md).
screenshots: install
	EPAY_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/test_temporal_ui.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) .epay .pytest_cache .mypy_cache .ruff_cache
