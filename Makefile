# Two commands do all the set-up:  make train  and  make test.
# Both create .venv with a Python TensorFlow 2.15 supports (3.11, 3.10 or 3.9) and install
# requirements-dev.txt; on a machine where nvidia-smi finds a GPU, TensorFlow comes with
# its CUDA 12 libraries (tensorflow[and-cuda]).
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
# The first of these that really runs (pyenv shims exist for versions that are not active).
PYTHON ?= $(shell for p in python3.11 python3.10 python3.9; do \
	$$p -c 'import sys' >/dev/null 2>&1 && { echo $$p; break; }; done)

.PHONY: train test venv

train: $(VENV)/.installed
	$(PY) train.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest tests $(ARGS)

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@if [ -z "$(PYTHON)" ]; then \
	  echo "TensorFlow 2.15 needs Python 3.9, 3.10 or 3.11, and none was found." >&2; \
	  echo "Install one (e.g. 'sudo apt install python3.11 python3.11-venv', the deadsnakes" >&2; \
	  echo "PPA on Ubuntu 24.04, or 'pyenv install 3.11') and run make again," >&2; \
	  echo "or name it: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)" >&2; \
	  exit 1; fi
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	if nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install -r requirements-dev.txt "tensorflow[and-cuda]==2.15.1"; \
	else \
	  $(PY) -m pip install -r requirements-dev.txt; fi
	touch $@
