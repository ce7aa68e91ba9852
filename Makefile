# comfykit developer commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# The lowest Python comfykit supports (pyproject's requires-python): the unit tests run there too.
PY_MIN     ?= 3.10
PY_MIN_BIN ?= $(or $(lastword $(wildcard $(HOME)/.pyenv/versions/$(PY_MIN).*/bin/python$(PY_MIN))),$(shell command -v python$(PY_MIN) 2>/dev/null))
VENV_MIN   := .venv-py$(PY_MIN)
STAMP_MIN  := $(VENV_MIN)/.installed-stamp

.PHONY: install comfyui demo serve test lint typecheck docs unit unit-min integration bench bench-pool unasync clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev,docs,server]'
	touch $(STAMP)

install: $(STAMP)

## Build (or reuse) the cached local CPU ComfyUI with its random-weight checkpoint.
comfyui: $(STAMP)
	$(BIN)/python -m comfykit.testing setup

## The main job: generate an image (starts a local CPU ComfyUI when COMFYUI_URL is unset).
demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

## The service form of the main job: the REST service on http://127.0.0.1:8000 with a local
## CPU ComfyUI (docs/service.md).
serve: comfyui
	$(BIN)/comfykit serve --local

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts bench examples
	$(BIN)/ruff format --check src tests scripts bench examples
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

unit: $(STAMP)
	$(BIN)/pytest tests/unit

## The unit tests on the lowest supported Python (fails, never skips, when it is not found).
$(STAMP_MIN): pyproject.toml Makefile
	@test -n "$(PY_MIN_BIN)" || { echo "Python $(PY_MIN) not found: set PY_MIN_BIN" >&2; exit 1; }
	$(PY_MIN_BIN) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(VENV_MIN)/bin/python -m pip install --disable-pip-version-check -q -e '.[dev,server]'
	touch $(STAMP_MIN)

unit-min: $(STAMP_MIN)
	$(VENV_MIN)/bin/pytest -q -p no:cacheprovider tests/unit

integration: comfyui
	$(BIN)/pytest tests/integration

## Everything: environments, lint, types, docs, unit and integration tests.
test: comfyui lint typecheck docs unit-min
	$(BIN)/pytest

bench: comfyui
	$(BIN)/python bench/bench_client.py

## The pool: jobs/s with 1-4 ComfyUI servers against K x one server's (bench/README.md).
bench-pool: comfyui
	$(BIN)/python bench/bench_pool.py

unasync: $(STAMP)
	$(BIN)/python scripts/unasync.py

clean:
	rm -rf $(VENV) $(VENV_MIN) build .mypy_cache .ruff_cache .pytest_cache
