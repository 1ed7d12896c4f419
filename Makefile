# The README quickstart is two commands: `make monograph` and `make test`.
# Both create .venv when it is missing and install the project into it.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= quick
# The CPU wheel of torch is installed first, so that the project's `torch>=2.1`
# is already satisfied and pip does not pull a multi-GB CUDA build.
# On a GPU machine: make TORCH_SPEC="torch" install
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
ARGS ?=

.PHONY: install monograph test test-all html clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

monograph: install
	$(PY) -m derain_utils.monograph run --profile $(PROFILE) $(ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
