# The README quickstart is two commands: `make monograph` and `make test`.
# Both create .venv when it is missing and install the project into it.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= quick
# torch is installed first, so that the project's `torch>=2.1` is already satisfied
# and pip does not pull anything bigger afterwards. TORCH_SPEC pins the build.
# On a GPU machine: make TORCH_SPEC="torch" install
TORCH_SPEC ?= torch==2.13.0
# On the public PyPI, Linux wheels of torch are CUDA builds (several GB of nvidia-*
# packages). CPU-only machines take PyTorch's CPU wheel index instead:
#   make install CPU_ONLY=1
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu   (the same, spelled out)
# The default (no index) installs from the configured package index (pip.conf), as CI does.
CPU_TORCH_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(if $(CPU_ONLY),$(CPU_TORCH_INDEX),)
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
PYTEST_ARGS ?=
ARGS ?=

.PHONY: install monograph smoke test lint test-all html clean-venv FORCE

FORCE:

# The torch build asked for, remembered: a different TORCH_SPEC or TORCH_INDEX reinstalls
# (the stamp below depends on this file, which changes only when they do).
$(VENV)/.torch-spec: FORCE
	@mkdir -p $(VENV)
	@echo "$(TORCH_SPEC) $(TORCH_INDEX)" | cmp -s - $@ || echo "$(TORCH_SPEC) $(TORCH_INDEX)" > $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch-spec
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,notebooks]"
	touch $@

install: $(VENV)/.installed

monograph: install
	$(PY) -m derain_utils.book.monograph run --profile $(PROFILE) $(ARGS)

# The plumbing check: every notebook at the smoke profile (seconds per notebook; its numbers mean nothing)
smoke: install
	$(PY) -m derain_utils.book.monograph run --profile smoke $(ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff, configured in pyproject.toml: unused and undefined names, import order (CI runs it)
lint: install
	$(PY) -m ruff check derain_utils tests notebooks

# HTML pages of the latest runs (with code; ARGS=--no-input for reader pages): of PROFILE when it is given
# (make html PROFILE=smoke), else of the profile with the newest completed runs
html: install
	$(PY) -m derain_utils.book.monograph html $(if $(filter command line environment,$(origin PROFILE)),--profile $(PROFILE),) $(ARGS)

test-all: install
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
