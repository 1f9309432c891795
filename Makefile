# The two set-up commands of the README. Both work on a fresh Debian machine with only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck system-deps venv clean dist

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

## dist: the wheel and sdist and the collection tarball (dist/), the EE's build context (build/ee); docs/packaging.md
dist: venv
	rm -rf dist build/ee
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m build --outdir dist .  # unset: setuptools warns "byte-compiling is disabled"
	$(BIN)/ansible-galaxy collection build remediator/ansible_collections/remediator/gpu --output-path dist
	$(BIN)/ansible-builder create --file execution-environment.yml --context build/ee --output-filename Containerfile

lint: venv
	$(BIN)/ruff check remediator tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
