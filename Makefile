# The two set-up commands of the README. Both work on a fresh Debian machine with only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck system-deps venv clean

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: system-deps $(STAMP)

## demo: bring the lab fleet up, probe and diagnose it, take it down again
demo: venv
	bash scripts/demo.sh

## test: create the venv, install everything, run the whole suite (unit + integration)
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check remediator tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
