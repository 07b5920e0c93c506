# Two commands set everything up on a fresh machine:
#   make train   - creates .venv on first use, then trains the default RetinaNet on embedded data
#   make test    - creates .venv on first use, then runs ruff, the strict docs build and the default test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ghostdet-installed

.PHONY: venv train test test-all lint docs bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

train: venv
	$(PY) tools/train_det.py --detector retinanet $(ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check ghostdet tools tests benchmarks

# the docs site (mkdocs.yml, docs/): strict, so a broken link, anchor or docstring fails the build
docs: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

test: lint docs
	$(PY) -m pytest -m "not slow" $(ARGS)

test-all: lint
	$(PY) -m pytest $(ARGS)

bench: venv
	$(PY) benchmarks/bench_cpu.py $(ARGS)

clean:
	rm -rf runs build dist *.egg-info .pytest_cache
