# `make demo` and `make test` are all a fresh machine needs: both build the
# virtual environment first (torch pinned so nothing pulls GBs).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STUDY ?= studies/demo

# ruff, then the layering contracts of .importlinter (Ray only in the stage layer, analysis
# without torch or Ray, compute/ without the tables, the stages or Ray, no import cycles).
LINT := $(PY) -m ruff check raystudy tests benchmarks jobs analysis && $(VENV)/bin/lint-imports --no-logo
PYTEST := $(PY) -m pytest -q

.PHONY: install demo test test-fast test-unit test-stages test-worlds test-system lint bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/raystudy run configs/demo.yaml --study $(STUDY)
	$(VENV)/bin/raystudy report $(STUDY)

# Everything, as CI runs it: the 30 slowest tests are printed and a JUnit XML is written to
# test-results/, so a test that grows slow shows up as one line.
test: install
	$(LINT)
	$(PYTEST) tests --durations=30 --junitxml=test-results/junit.xml

# While working: lint and the unit tier (no Ray).
test-fast: install
	$(LINT)
	$(PYTEST) tests/unit

# One tier at a time (tests/<tier>/): unit (no Ray), stages (a real local Ray), worlds
# (known-answer studies and coverage), system (CLI processes, clusters, jobs, browser, notebooks, packaging).
test-unit test-stages test-worlds test-system: test-%: install
	$(PYTEST) tests/$*

lint: install
	$(LINT)

bench: install
	$(PY) benchmarks/run.py

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or a missing page fails it.
docs: install
	$(PY) -m mkdocs build --strict

clean:
	rm -rf studies .pytest_cache test-results
