"""Input checks that run before any kernel computes: non-finite values, and the ladder
conditions of reference.validate_ladder (NaN/Inf, constant rung, MAD = 0) with the rung
medians that the ladder chain needs anyway.

A failed check only flags the input: nmrladder.runtime.preprocess then asks
reference.validate_ladder for the message, so the errors are the reference's own.
"""

import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdlib cimport calloc, free

from _common cimport count_nonfinite, floating, resolve_threads
from _robust cimport Selector, median_ranks, select_ranks, selector_free, selector_init

cdef enum:
    VALID = 0
    INVALID = 1

# check_ladders flags
LADDER_OK = VALID
LADDER_INVALID = INVALID


def nonfinite_count(const floating[::1] x):
    """Number of NaN/Inf values. NumPy equivalent: ``np.count_nonzero(~np.isfinite(x))``."""
    if x.shape[0] == 0:
        return 0
    return count_nonfinite(&x[0], x.shape[0])


cdef int check_rung(const float* x, Py_ssize_t n, Selector* s, double* median,
                    double* middle) noexcept nogil:
    # 1 for a constant rung or MAD = 0, else 0 with the rung's median and the two order
    # statistics whose mean it is (the same one twice for odd n).
    cdef Py_ssize_t i, at_median = 0
    cdef Py_ssize_t ranks[2]
    cdef float lo = x[0], hi = x[0]
    cdef int count
    for i in range(1, n):
        lo = x[i] if x[i] < lo else lo
        hi = x[i] if x[i] > hi else hi
    if lo == hi:
        return 1
    count = median_ranks(n, ranks)
    select_ranks(x, n, ranks, count, middle, s)
    if count == 1:
        middle[1] = middle[0]
    median[0] = middle[0] if count == 1 else (middle[0] + middle[1]) / 2.0
    # median(|x - m|) == 0 exactly when more than half the points equal m: for float32 values
    # m is either one of them or lies strictly between two of them.
    for i in range(n):
        at_median += x[i] == median[0]
    return 1 if 2 * at_median > n else 0


def check_ladders(const float[:, :, ::1] x, double[:, ::1] offsets, double[:, :, ::1] middles,
                  int threads=0):
    """Flag per ladder of x [N, R, L] (LADDER_INVALID: a NaN/Inf value, a constant rung, or a
    rung with MAD = 0, as reference.validate_ladder rejects), and the median of every rung
    of a valid ladder into offsets [N, R] (np.median(x, axis=-1) in float64), with the two
    middle order statistics it averages into middles [N, R, 2]. L >= 1."""
    cdef Py_ssize_t n_ladders = x.shape[0], rungs = x.shape[1], length = x.shape[2]
    cdef Py_ssize_t i, k
    cdef int n_threads = resolve_threads(threads, n_ladders), t
    cdef Selector* selectors
    cdef const float* ladder
    flags = np.zeros(n_ladders, dtype=np.int8)
    cdef signed char[::1] flag_view = flags
    if n_ladders == 0 or rungs == 0:
        return flags
    selectors = <Selector*>calloc(n_threads, sizeof(Selector))
    if selectors == NULL:
        raise MemoryError()
    try:
        for t in range(n_threads):
            if selector_init(&selectors[t], length) != 0:
                raise MemoryError()
        for i in prange(n_ladders, nogil=True, num_threads=n_threads, schedule="static"):
            ladder = &x[0, 0, 0] + i * rungs * length
            if count_nonfinite(ladder, rungs * length):
                flag_view[i] = INVALID
                continue
            for k in range(rungs):
                if check_rung(ladder + k * length, length, &selectors[threadid()],
                              &offsets[i, k], &middles[i, k, 0]):
                    flag_view[i] = INVALID
                    break
    finally:
        for t in range(n_threads):
            selector_free(&selectors[t])
        free(selectors)
    return flags
