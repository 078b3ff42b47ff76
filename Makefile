# `make demo` and `make test` are all a fresh machine needs: both build the
# virtual environment first (torch pinned so nothing pulls GBs).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STUDY ?= studies/demo

.PHONY: install demo test bench clean

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
	$(PY) -m pytest -q tests

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf studies .pytest_cache
