# Two commands do all the set-up:  make train  and  make test.
# Both create .venv with a Python TensorFlow 2.15 supports (3.11, 3.10 or 3.9) and install
# requirements-dev.txt; on a machine where nvidia-smi finds a GPU, TensorFlow comes with
# its CUDA 12 libraries (tensorflow[and-cuda]). make horovod adds Horovod for
# train.py --horovod (built from source with Gloo); make test installs it too, to test it.
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
# The first of these that really runs (pyenv shims exist for versions that are not active).
PYTHON ?= $(shell for p in python3.11 python3.10 python3.9; do \
	$$p -c 'import sys' >/dev/null 2>&1 && { echo $$p; break; }; done)

# Horovod's build options: TensorFlow and Gloo, nothing else (README: NCCL for GPUs).
HOROVOD_BUILD := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1

.PHONY: train test venv horovod

train: $(VENV)/.installed
	$(PY) train.py $(ARGS)

test: $(VENV)/.installed $(VENV)/.horovod
	$(PY) -m pytest tests $(ARGS)

venv: $(VENV)/.installed

horovod: $(VENV)/.horovod

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

$(VENV)/.horovod: $(VENV)/.installed requirements-horovod.txt
	$(PY) -m pip install wheel==0.48.0 packaging==26.4
	$(HOROVOD_BUILD) $(PY) -m pip install --no-build-isolation -r requirements-horovod.txt
	$(VENV)/bin/horovodrun --check-build 2>/dev/null | grep -q '\[X\] TensorFlow' || { \
	  echo "Horovod was installed without TensorFlow support; see requirements-horovod.txt." >&2; \
	  exit 1; }
	touch $@
