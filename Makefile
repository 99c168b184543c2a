# Two commands on a fresh machine with nothing but Python 3.10+:
#   make demo   -> .venv with pinned dependencies, then the quick-start end to end
#   make test   -> the same set-up, then the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQS_STAMP := $(VENV)/.requirements-installed

.PHONY: setup demo test test-slow clean

$(REQS_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The package itself (Python + the C++ LAMMPS plugin and gmnn._native) is rebuilt
# incrementally every time; --no-build-isolation builds against the pinned CPU torch.
setup: $(REQS_STAMP)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/quickstart/run.sh

test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest

test-slow: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -m slow

clean:
	rm -rf build demo_output
