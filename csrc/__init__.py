"""nmrladder.kernels: the compiled preprocessing kernels (Cython, OpenMP), built in place.

One job per module, each exposing batched entry points whose NumPy equivalents live in
nmrladder.runtime.reference; nmrladder.runtime.preprocess dispatches to them:

    robust   median, percentile, MAD sigma (masked, batched); robust_scale; detrended MAD
    masks    dilation/erosion, dilate_components, Savitzky-Golay smoothing, peak/baseline masks
    align    cross-correlation (direct or FFT), shift estimation, shift application, local field
    rescale  amplitude scale (LS, inverse, Deming), fusion weights with cap, fusion
    checks   input checks run before any kernel (NaN/Inf, constant rungs, MAD = 0)
    ladder   the whole ladder chain for a batch [N, R, L], one GIL release, ladders in parallel

The nogil cores are the _*.pxd files beside them (and a few C headers); docs/kernels.md
describes the layout, the algorithms and the AddressSanitizer build.

NMRLADDER_KERNELS_PATH puts another build of these modules first (``make asan-test`` runs
the tests against an AddressSanitizer build this way, leaving the in-place build alone).
"""

import os

_other_build = os.environ.get("NMRLADDER_KERNELS_PATH")
if _other_build:
    __path__.insert(0, os.path.abspath(_other_build))
