"""Builds the Cython kernels of csrc/ (OpenMP); all other metadata is in pyproject.toml.

Environment switches (documented in docs/development.md):
  NMRLADDER_ASAN=1      bounds checks on, AddressSanitizer, -O1 -g  (``make asan-test``)
  NMRLADDER_NO_OPENMP=1 build without OpenMP (single-threaded kernels)
No -march=native: distributed builds use the portable x86-64 baseline; the compiler's
auto-vectoriser is given -O3 and -ffp-contract=fast only.
"""

import os
import sys
from glob import glob
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

ASAN = os.environ.get("NMRLADDER_ASAN") == "1"
OPENMP = os.environ.get("NMRLADDER_NO_OPENMP") != "1" and sys.platform != "darwin"

compile_args = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"] if ASAN else ["-O3"]
compile_args += ["-ffp-contract=fast", "-Wno-unreachable-code"]
link_args = ["-fsanitize=address"] if ASAN else []
if OPENMP:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

directives = {
    "language_level": 3,
    "boundscheck": ASAN,
    "wraparound": False,
    "initializedcheck": ASAN,
    "cdivision": True,
    "nonecheck": False,
}

extensions = [
    Extension(
        f"nmrladder.kernels.{Path(source).stem}",
        [source],
        include_dirs=[numpy.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for source in sorted(glob("csrc/*.pyx"))
]

setup(
    # include_path: the shared .pxd helpers of csrc/ are cimported by their bare names.
    # The sanitizer build's C sources go to build/asan/c: the in-place ones stay as they are.
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=["csrc"],
        build_dir="build/asan/c" if ASAN else None,
        quiet=True,
    ),
)
