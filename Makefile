# `make demo` and `make test` are all a fresh machine needs: both build the
# virtual environment first (torch pinned so nothing pulls GBs).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STUDY ?= studies/demo

LINT := $(PY) -m ruff check raystudy tests benchmarks jobs analysis
FAST := not ray and not cluster and not browser and not slow

.PHONY: install demo test test-fast lint bench clean

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

test: install
	$(LINT)
	$(PY) -m pytest -q tests

# While working: lint and the tests that start no Ray, no cluster, no browser and train nothing.
test-fast: install
	$(LINT)
	$(PY) -m pytest -q -m "$(FAST)" tests

lint: install
	$(LINT)

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf studies .pytest_cache
