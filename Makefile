# Every target prepares .venv first (torch==2.13.0 before the project, see DEVELOPERS.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.nmrladder-installed
BUILD_DEPS := "setuptools>=69" wheel "Cython>=3.0" "numpy>=1.26"

.PHONY: venv demo test lint bench asan-test clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.pyx csrc/*.pxd csrc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# A bare torch requirement would pull a multi-GB CUDA build: take the CPU wheel first.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q $(BUILD_DEPS)
	$(PY) -m pip install -q --no-build-isolation -e ".[train,dev]"
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nmrladder demo --out demo_out

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pytest benchmarks -q --benchmark-enable --benchmark-only

# Kernels rebuilt with bounds checks and AddressSanitizer, their tests run under it,
# then the normal build is restored.
asan-test: $(STAMP)
	NMRLADDER_ASAN=1 $(PY) setup.py -q build_ext --inplace --force
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
		$(PY) -m pytest -q -p no:cacheprovider tests/test_kernels.py
	$(PY) setup.py -q build_ext --inplace --force

clean:
	rm -rf build demo_out .pytest_cache csrc/*.c csrc/*.so
