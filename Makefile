# Two commands on a fresh machine (Python 3.11+, make):
#   make demo   - set up .venv, list the zoo and print the paper-vs-measured complexity report
#   make test   - set up .venv and run the tests (CI: .ci/run, which also checks the import layers)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pinned to the releases this project is tested with
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint setup report clean

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,video,plot,lint]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/zoo list
	$(VENV)/bin/zoo report

report: setup
	$(VENV)/bin/zoo report --out benchmarks/results

test: setup
	$(PY) -m pytest -q -n auto --dist worksteal

# the import contract in setup.cfg [importlinter]: layers import downward only
lint: setup
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info zoo/_data
