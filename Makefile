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
	$(PY) -m pip install -q --no-build-isolation -e ".[cpu,train,dev,ray]"
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nmrladder demo --out demo_out

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

# Every pytest-benchmark suite of benchmarks/ (minutes; best on an idle machine), saved as JSON
# and rendered to benchmarks/results/<machine>.md, which is printed (benchmarks/README.md).
bench: $(STAMP)
	$(VENV)/bin/nmrladder bench --suite all

# Kernels rebuilt with bounds checks and AddressSanitizer into build/asan (the in-place build
# is left alone), their tests run against that build with libasan preloaded and fewer
# hypothesis examples; the tests check that they really run under ASan (docs/kernels.md).
ASAN_BUILD := build/asan
asan-test: $(STAMP)
	NMRLADDER_ASAN=1 $(PY) setup.py -q build_ext --build-lib $(ASAN_BUILD) \
		--build-temp $(ASAN_BUILD)/tmp --force
	NMRLADDER_KERNELS_PATH=$(ASAN_BUILD)/nmrladder/kernels NMRLADDER_EXPECT_ASAN=1 \
	NMRLADDER_TEST_EXAMPLES=5 ASAN_OPTIONS=detect_leaks=0 \
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
		$(PY) -m pytest -q -p no:cacheprovider tests/test_kernels.py

clean:
	rm -rf build demo_out .pytest_cache csrc/*.c csrc/*.so
