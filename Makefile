# ePay: `make run` starts the whole stack, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test test-fast fuzz chaos chaos-partitions bench record-histories screenshots lint install lock clean

# The whole tree comes pinned from requirements-dev.lock (make lock writes it from
# pyproject.toml); ePay itself is installed on top, editable, without resolving again.
$(BIN)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m tools.devstack

test: install
	$(BIN)/pytest -q --durations=25

# The tests that need no running stack (unit and workflow tiers, tests/conftest.py): minutes.
test-fast: install
	$(BIN)/pytest -q --durations=10 -m "not e2e and not slow"

# The schema-driven fuzz run at length (tests/test_fuzz.py; make test runs a small one).
fuzz: install
	EPAY_FUZZ_EXAMPLES=300 $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz.py

chaos: install
	$(BIN)/python -m tests.chaos --payments 300

# The chaos run with network partitions instead of kills (docs/chaos.md): needs root and
# iproute2's ip netns; says so and exits 77 where namespaces cannot be made.
chaos-partitions: install
	$(BIN)/python -m tests.partitions --payments 300

# ePay against the Temporal floor on a stack of its own (docs/performance.md).
bench: install
	$(BIN)/epay bench --start-stack --payments 1000

# Record the workflow histories every release must replay (tests/histories/, docs/design.md).
record-histories: install
	$(BIN)/pytest -q -p no:cacheprovider tests/histories/record.py

# Refresh the screenshots in docs/images/: the runbook's of the Temporal UI
# (docs/operations.md) and the payment page's (README.md, docs/payer.md).
screenshots: install
	EPAY_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/test_temporal_ui.py tests/test_hosted_page.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# Pin the whole dependency tree again after a change to pyproject.toml: requirements.lock for
# the production image, requirements-dev.lock for make run, make test and CI.
LOCK := $(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-header \
	--no-emit-index-url --no-emit-find-links
lock: install
	$(LOCK) --output-file requirements.lock pyproject.toml
	$(LOCK) --extra dev --output-file requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) .epay .pytest_cache .mypy_cache .ruff_cache
