# Two commands do all the set-up:  make train  and  make test  (make quick: a short real
# run of a small BERT first).
# Both create .venv with a Python TensorFlow 2.15 supports (3.11, 3.10 or 3.9) and install
# requirements-dev.txt; on a machine with an NVIDIA driver, TensorFlow comes with its CUDA 12
# libraries (tensorflow[and-cuda]). make horovod adds Horovod for train.py --horovod (built
# from source with Gloo); make test installs it too, to test it. make gpu-check proves the
# GPU paths on a GPU machine.
VENV := .venv
PY := $(VENV)/bin/python
# cuda when the machine has an NVIDIA driver: nvidia-smi works, or (in containers without
# nvidia-smi) the driver's files are there; else cpu. The stamp names the build installed,
# so a venv moved to a machine of the other kind is installed anew.
# (NVIDIA_DRIVER_FILES is set by tests/test_layout.py's dry runs only.)
NVIDIA_DRIVER_FILES ?= /proc/driver/nvidia/version /dev/nvidia0
TF_BUILD := $(shell build=cpu; nvidia-smi >/dev/null 2>&1 && build=cuda; \
	for f in $(NVIDIA_DRIVER_FILES); do [ -e $$f ] && build=cuda; done; echo $$build)
INSTALLED := $(VENV)/.installed-$(TF_BUILD)
ARGS ?=
# The first of these that really runs (pyenv shims exist for versions that are not active).
PYTHON ?= $(shell for p in python3.11 python3.10 python3.9; do \
	$$p -c 'import sys' >/dev/null 2>&1 && { echo $$p; break; }; done)

# Horovod's build options: TensorFlow and Gloo, nothing else; and two for today's tools.
# GCC 13 and newer: Horovod 0.28.1's common.h throws std::logic_error without <stdexcept>
# and group_table.h lacks <string>, fixed upstream after 0.28.1 ("add missing headers",
# horovod PR #3957, commit ff4ca09d): both headers are included in every C++ file.
# CMake 4 and newer (pip's cmake today) refuses the cmake_minimum_required of Horovod's
# and Gloo's CMakeLists below 3.5; Horovod's own CI sets CMAKE_POLICY_VERSION_MINIMUM=3.5
# (horovod PR #4310). Older CMake ignores the variable.
HOROVOD_BUILD := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
	CXXFLAGS="$(strip -include stdexcept -include string $(CXXFLAGS))" CMAKE_POLICY_VERSION_MINIMUM=3.5
# On a machine with a CUDA 12 toolkit (nvcc) and NCCL, Horovod's GPU operations run on NCCL,
# which "will significantly improve performance over the CPU version" (Horovod's
# docs/gpus.rst): HOROVOD_GPU_OPERATIONS=NCCL, with NCCL from NCCL_HOME (a folder holding
# include/nccl.h and lib/libnccl.so, e.g. the system's) or else from pip's
# nvidia-nccl-cu12 (tensorflow[and-cuda]==2.15.1 pins 2.16.5). That wheel holds
# nvidia/nccl/include/nccl.h and nvidia/nccl/lib/libnccl.so.2 (listed from the 2.16.5
# wheel) but no libnccl.so, the name Horovod's cmake/Modules/FindNCCL.cmake
# looks for with HOROVOD_NCCL_LINK=SHARED: the build gets a folder in the venv linking
# both, and an rpath to the wheel's lib/. --no-cache-dir: pip would reuse a Horovod wheel
# built earlier with other options (Horovod's docs/gpus.rst installs with it); an installed
# Horovod is uninstalled first, as pip would keep it. If the NCCL build fails, the Gloo one
# follows (after uninstalling what the NCCL build left). The stamp says which was built,
# and why: to build again after installing a CUDA toolkit, rm .venv/.horovod; make horovod.
NVCC = $(shell command -v nvcc 2>/dev/null)
# Horovod 0.28.1 links the CUDA runtime of that nvcc statically (its CMakeLists.txt:
# CMAKE_CUDA_RUNTIME_LIBRARY "Static", horovod/horovod#3867), so a CUDA 11 nvcc would
# give a CUDA 11 Horovod inside TensorFlow 2.15's CUDA 12.2, and a CUDA 13 one would need
# CUDA 13's driver (580+) beside pip's NCCL for CUDA 12: release 12 only.
NVCC_RELEASE = $(firstword $(shell nvcc --version 2>/dev/null | \
	sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p'))
NVCC_IS_CUDA_12 = $(filter 12,$(firstword $(subst ., ,$(NVCC_RELEASE))))
# Absolute: Horovod's cmake/Modules/FindNCCL.cmake puts HOROVOD_NCCL_HOME into
# CMAKE_PREFIX_PATH, where a relative folder is taken from pip's temporary build tree.
NCCL_HOME ?=
NCCL_HOME_ABS = $(if $(NCCL_HOME),$(abspath $(NCCL_HOME)))
PIP_NCCL = $(shell [ -x $(PY) ] && $(PY) -c 'import os, sys; print(next((os.path.join(p, \
	"nvidia", "nccl") for p in sys.path if os.path.isfile(os.path.join(p, "nvidia", \
	"nccl", "include", "nccl.h"))), ""))' 2>/dev/null)
NCCL_FOR_HOROVOD = $(or $(NCCL_HOME_ABS),$(PIP_NCCL))
NO_NCCL_BUILD = $(if $(NVCC),$(if $(NVCC_IS_CUDA_12),$(if $(NCCL_FOR_HOROVOD),,no NCCL \
	(pip's nvidia-nccl-cu12, or NCCL_HOME=<folder>)),$(if $(NVCC_RELEASE),nvcc is CUDA \
	$(NVCC_RELEASE),nvcc --version names no CUDA release); TensorFlow 2.15 runs CUDA \
	12),no CUDA toolkit (nvcc) on PATH)
HOROVOD_NCCL_LINKS := $(abspath $(VENV)/horovod-nccl)
HOROVOD_NCCL_LOG := $(VENV)/horovod-nccl-build.log
HOROVOD_NCCL_BUILD = HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_LINK=SHARED \
	HOROVOD_NCCL_HOME=$(or $(NCCL_HOME_ABS),$(HOROVOD_NCCL_LINKS)) \
	$(if $(NCCL_HOME),,LDFLAGS="-Wl,-rpath,$(PIP_NCCL)/lib")
LINK_PIP_NCCL = $(if $(NCCL_HOME),true,mkdir -p $(HOROVOD_NCCL_LINKS)/lib && \
	ln -sfn $(PIP_NCCL)/include $(HOROVOD_NCCL_LINKS)/include && \
	ln -sf $(PIP_NCCL)/lib/libnccl.so.2 $(HOROVOD_NCCL_LINKS)/lib/libnccl.so)

.PHONY: train quick test test-fake-driver venv horovod gpu-check bench-peer

train: $(INSTALLED)
	$(PY) train.py $(ARGS)

# make quick: BERT-Mini (4 layers, hidden 256; the URL is the one google-research/bert
# lists) fine-tuned on a sample of the real reviews, in minutes on a CPU. The Hub module
# is made once, in QUICK_HUB; QUICK_MODEL=PATH gives a local zip or the folder unzipped
# from it instead of the URL. Learning rate 1e-4: google-research/bert tunes its small
# BERTs over 3e-4, 1e-4, 5e-5 and 3e-5. 2,000 reviews for 2 epochs keep it under 10 minutes
# on 2 CPU cores (bench/quick_time.py). The output dir is its own, so this run never
# mixes with the notebook's in OUTPUT_Bert. ARGS come last and win over QUICK_FLAGS.
QUICK_MODEL ?= https://storage.googleapis.com/bert_models/2020_02_20/uncased_L-4_H-256_A-4.zip
QUICK_HUB ?= data/hub/$(basename $(notdir $(patsubst %/,%,$(QUICK_MODEL))))
QUICK_OUTPUT ?= OUTPUT_Bert_quick
QUICK_FLAGS := --train-samples 2000 --test-samples 1000 --learning-rate 1e-4 --epochs 2
quick: $(INSTALLED)
	$(PY) -m imdb_bert.tools.quick $(QUICK_MODEL) $(QUICK_HUB)
	$(PY) train.py --bert-hub $(QUICK_HUB) --output-dir $(QUICK_OUTPUT) $(QUICK_FLAGS) $(ARGS)
	@echo "make quick: trained. Classify sentences with the model it wrote:"
	$(PY) predict.py --output-dir $(QUICK_OUTPUT) "That movie was absolutely awful" \
	  "The film was creative and surprising"

test: $(INSTALLED) $(VENV)/.horovod
	$(PY) -m pytest tests $(ARGS)

# The device-dependent tests as on a GPU machine: a fake nvidia-smi (an A100, a current
# driver) first on PATH for pytest only, so make's own build choice (TF_BUILD) and the
# installed .venv stay as they are.
FAKE_DRIVER_TESTS := tests/test_device.py tests/test_gpu_check.py \
	tests/test_layout.py::test_make_installs_the_cuda_build_where_a_driver_is_and_says_so \
	tests/test_predict.py::test_an_nvidia_gpu_takes_large_inputs_from_onnx \
	tests/test_bf16.py::test_gpu_switches_set_xla_and_the_float16_rewrite
test-fake-driver: $(INSTALLED)
	fake=$$(mktemp -d) && trap 'rm -rf "$$fake"' EXIT && \
	printf '#!/bin/sh\necho "NVIDIA A100-SXM4-40GB, 550.54.15, 8.0"\n' > "$$fake/nvidia-smi" && \
	chmod +x "$$fake/nvidia-smi" && \
	PATH="$$fake:$$PATH" $(PY) -m pytest -q $(FAKE_DRIVER_TESTS) $(ARGS)

venv: $(INSTALLED)

# Without Horovod (make horovod), its check is a SKIP line: a one-GPU box never needs it.
gpu-check: $(INSTALLED)
	$(PY) -m imdb_bert.tools.gpu_check $(ARGS)

# The PyTorch peer of bench/vs_pytorch.py, in a virtualenv of its own (Python 3.11+).
bench-peer: .venv-peer/.installed

.venv-peer/.installed: bench/requirements-peer.txt
	[ -x .venv-peer/bin/python ] || python3.11 -m venv .venv-peer
	.venv-peer/bin/python -m pip install -r bench/requirements-peer.txt
	touch $@

horovod: $(VENV)/.horovod

$(INSTALLED): requirements.txt requirements-dev.txt
	@if [ -z "$(PYTHON)" ]; then \
	  echo "TensorFlow 2.15 needs Python 3.9, 3.10 or 3.11, and none was found." >&2; \
	  echo "Install one (e.g. 'sudo apt install python3.11 python3.11-venv', the deadsnakes" >&2; \
	  echo "PPA on Ubuntu 24.04, or 'pyenv install 3.11') and run make again," >&2; \
	  echo "or name it: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)" >&2; \
	  exit 1; fi
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.installed $(VENV)/.installed-*
	@if [ "$(TF_BUILD)" = cuda ]; then \
	  echo "make: an NVIDIA driver is present: installing TensorFlow with its CUDA 12 libraries (tensorflow[and-cuda])"; \
	else \
	  echo "make: no NVIDIA driver (no working nvidia-smi, /proc/driver/nvidia/version or /dev/nvidia0): installing TensorFlow for the CPU"; fi
	$(PY) -m pip install -r requirements-dev.txt \
	  $(if $(filter cuda,$(TF_BUILD)),"tensorflow[and-cuda]==2.15.1")
	touch $@

$(VENV)/.horovod: $(INSTALLED) requirements-horovod.txt
	$(PY) -m pip install wheel==0.48.0 packaging==26.4
	rm -f $@ $@.built
	$(if $(NO_NCCL_BUILD),@echo "make horovod: $(NO_NCCL_BUILD): building Horovod with Gloo only (CPU operations)." \
	  && echo "gloo: $(NO_NCCL_BUILD)" > $@.built, \
	  echo "make horovod: building Horovod with NCCL ($(NCCL_FOR_HOROVOD)), log in $(HOROVOD_NCCL_LOG)" \
	  && { $(LINK_PIP_NCCL) && { $(PY) -m pip uninstall -y horovod; true; } > $(HOROVOD_NCCL_LOG) 2>&1 \
	  && $(HOROVOD_BUILD) $(HOROVOD_NCCL_BUILD) \
	  $(PY) -m pip install --no-build-isolation --no-cache-dir -r requirements-horovod.txt \
	  >> $(HOROVOD_NCCL_LOG) 2>&1 && $(VENV)/bin/horovodrun --check-build 2>/dev/null | \
	  grep -q '\[X\] NCCL' && echo nccl > $@.built; } || { tail -n 5 $(HOROVOD_NCCL_LOG); \
	  echo "make horovod: the NCCL build failed (see $(HOROVOD_NCCL_LOG)): building Horovod with Gloo only (CPU operations)."; \
	  echo "gloo: the NCCL build failed, see $(HOROVOD_NCCL_LOG)" > $@.built; \
	  $(PY) -m pip uninstall -y horovod > /dev/null 2>&1; })
	grep -q '^nccl' $@.built || \
	  $(HOROVOD_BUILD) $(PY) -m pip install --no-build-isolation -r requirements-horovod.txt
	$(VENV)/bin/horovodrun --check-build 2>/dev/null | grep -q '\[X\] TensorFlow' || { \
	  echo "Horovod was installed without TensorFlow support; see requirements-horovod.txt." >&2; \
	  exit 1; }
	mv $@.built $@
