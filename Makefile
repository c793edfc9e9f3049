# The README's two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install repo demo test test-unit lint check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,models,dev]'
	touch $(STAMP)

install: $(STAMP)

repo: $(STAMP)
	$(BIN)/build-repo models.yaml

demo: repo
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -ra

test-unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit

lint: $(STAMP)
	$(BIN)/ruff check builder clients python_backends tests scripts benchmarks
	$(BIN)/mypy builder
	$(BIN)/mypy --strict clients

check: $(STAMP)
	$(BIN)/build-repo models.yaml --check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
