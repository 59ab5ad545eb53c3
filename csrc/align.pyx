"""Alignment of METHOD 2.1: circular cross-correlation over a lag range, sub-point shift
estimation (Gaussian-smoothed correlation, log-parabola refinement), shift application by
linear interpolation with wrap, and the local shift field from anchor windows; batched over
rows with OpenMP where the input is a batch.

The correlation is computed directly (lag-blocked, vectorised) or by FFT, as the cost model
of correlate.h prefers (method AUTO), or as forced (DIRECT, FFT).
NumPy equivalents are named in each docstring (nmrladder.runtime.reference).
"""

import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdlib cimport calloc, free

from _align cimport (
    CORRELATE_AUTO,
    CORRELATE_DIRECT,
    CORRELATE_FFT,
    Candidate,
    Correlator,
    LocalAligner,
    apply_shift_field_line,
    apply_shift_line,
    correlate,
    correlator_free,
    correlator_init,
    estimate_shift_with,
    find_anchors,
    local_aligner_free,
    local_aligner_init,
    local_shift_field_line,
    nmr_prefer_fft,
    set_reference,
)
from _common cimport floating, resolve_threads
from _robust cimport Selector, selector_free, selector_init

cdef class CorrelatorSet:
    """One Correlator per thread for lines of n points and lags within +-half_lags."""
    cdef Correlator* items
    cdef int count

    def __cinit__(self, int count, Py_ssize_t n, Py_ssize_t half_lags, int method):
        cdef int t
        self.items = <Correlator*>calloc(count, sizeof(Correlator))
        if self.items == NULL:
            raise MemoryError()
        for t in range(count):
            if correlator_init(&self.items[t], n, half_lags, method) != 0:
                raise MemoryError()
            self.count = t + 1

    def __dealloc__(self):
        cdef int t
        if self.items != NULL:
            for t in range(self.count):
                correlator_free(&self.items[t])
            free(self.items)


# Scratch kept between calls (fresh pages cost more than a narrow correlation), taken out
# while in use so that concurrent callers never share one.
_kept_correlators = {}


cdef CorrelatorSet take_correlators(int count, Py_ssize_t n, Py_ssize_t half_lags, int method):
    kept = _kept_correlators.pop((count, n, half_lags, method), None)
    return kept if kept is not None else CorrelatorSet(count, n, half_lags, method)


cdef void keep_correlators(CorrelatorSet correlators, Py_ssize_t n, Py_ssize_t half_lags,
                           int method):
    if n <= 1 << 20:
        _kept_correlators[(correlators.count, n, half_lags, method)] = correlators
        while len(_kept_correlators) > 2:
            del _kept_correlators[next(iter(_kept_correlators))]


AUTO = CORRELATE_AUTO
DIRECT = CORRELATE_DIRECT
FFT = CORRELATE_FFT


def prefer_fft(Py_ssize_t length, Py_ssize_t n_lags):
    """The cost model: True where an FFT correlation of `length` points over `n_lags` lags
    is expected to beat the direct one (direct ~ length * lags, FFT ~ size log size)."""
    return bool(nmr_prefer_fft(length, n_lags))


def cross_correlation(const floating[::1] ref, const floating[::1] x, Py_ssize_t max_lag,
                      int method=CORRELATE_AUTO):
    """Circular cross-correlation at lags -max_lag..max_lag, both inputs centred on their mean:
    ``c[j] = sum_i r_i x_{(i + lag) mod L}``.

    NumPy equivalent: ``reference.cross_correlation(ref, x, max_lag)``. Returns float64
    [2 max_lag + 1]. ref and x have the same length >= 1; max_lag >= 0.
    """
    cdef Correlator cr
    cdef Py_ssize_t j
    if correlator_init(&cr, ref.shape[0], max_lag, method) != 0:
        raise MemoryError()
    out = np.empty(2 * max_lag + 1)
    cdef double[::1] view = out
    try:
        with nogil:
            set_reference(&cr, &ref[0])
            correlate(&cr, &x[0])
            for j in range(2 * max_lag + 1):
                view[j] = cr.c[j]
    finally:
        correlator_free(&cr)
    return out


def estimate_shifts(const floating[::1] ref, const floating[:, ::1] x, Py_ssize_t max_lag,
                    const double[::1] taps, int method=CORRELATE_AUTO, int threads=0):
    """Shift d of every row of x [N, L] against ref [L] (x[i] ~= ref[i - d]), |d| <= max_lag.

    NumPy equivalent: ``reference.estimate_shift(ref, row, max_lag, sigma)`` per row, with
    taps = reference.gaussian_taps(sigma). Returns float64 [N].
    """
    cdef Py_ssize_t n_rows = x.shape[0], length = x.shape[1], i
    cdef Py_ssize_t n_taps = taps.shape[0]
    cdef int n_threads = resolve_threads(threads, n_rows), t
    cdef Py_ssize_t half_lags = max_lag + n_taps // 2
    cdef CorrelatorSet correlators
    cdef Correlator* items
    shifts = np.zeros(n_rows)
    cdef double[::1] shift_view = shifts
    if n_rows == 0:
        return shifts
    correlators = take_correlators(n_threads, length, half_lags, method)
    items = correlators.items
    for t in range(n_threads):
        set_reference(&items[t], &ref[0])
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
        shift_view[i] = estimate_shift_with(&items[threadid()], &x[0, 0] + i * length,
                                            &taps[0], n_taps)
    keep_correlators(correlators, length, half_lags, method)
    return shifts


def apply_shifts(const floating[:, ::1] x, const double[::1] shifts, int threads=0):
    """y[k, i] = x[k, i - shifts[k]] by linear interpolation with circular wrap, x [N, L].

    NumPy equivalent: ``reference.apply_shift(x, shifts)``; scipy, per row:
    ``ndimage.shift(x[k], shifts[k], order=1, mode="grid-wrap")``. Returns float64 [N, L].
    """
    cdef Py_ssize_t n_rows = x.shape[0], length = x.shape[1], i
    cdef int n_threads = resolve_threads(threads, n_rows)
    out = np.empty((n_rows, length))
    cdef double[:, ::1] out_view = out
    if n_rows == 0 or length == 0:
        return out
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
        apply_shift_line(&x[0, 0] + i * length, length, shifts[i],
                         &out_view[0, 0] + i * length)
    return out


def apply_shift_field_rows(const floating[:, ::1] x, const double[::1] field, int threads=0):
    """y[k, i] = x[k, i - field[i]] by linear interpolation with circular wrap, x [N, L].

    NumPy equivalent: ``reference.apply_shift_field(x, field)``. Returns float64 [N, L].
    """
    cdef Py_ssize_t n_rows = x.shape[0], length = x.shape[1], i
    cdef int n_threads = resolve_threads(threads, n_rows)
    out = np.empty((n_rows, length))
    cdef double[:, ::1] out_view = out
    if n_rows == 0 or length == 0:
        return out
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
        apply_shift_field_line(&x[0, 0] + i * length, length, &field[0], 1.0,
                               &out_view[0, 0] + i * length)
    return out


def anchors(const double[::1] ref, Py_ssize_t n_anchors, Py_ssize_t window,
            double alpha=8.0):
    """Positions of up to n_anchors strong, separated peaks of ref (ascending).

    NumPy equivalent: ``reference.find_anchors(ref, n_anchors, window, alpha)``.
    Returns int64 [count].
    """
    cdef Py_ssize_t length = ref.shape[0], count, i
    cdef LocalAligner la
    cdef Selector selector
    if length == 0:
        return np.zeros(0, dtype=np.int64)
    if selector_init(&selector, length) != 0:
        raise MemoryError()
    if local_aligner_init(&la, length, 0, 0) != 0:
        selector_free(&selector)
        raise MemoryError()
    try:
        with nogil:
            count = find_anchors(&ref[0], length, n_anchors, window, alpha, la.candidates,
                                 la.anchors, &selector)
        return np.array([la.anchors[i] for i in range(count)], dtype=np.int64)
    finally:
        local_aligner_free(&la)
        selector_free(&selector)


def local_shift_field(const double[::1] ref, const floating[::1] x, Py_ssize_t window,
                      Py_ssize_t max_lag, Py_ssize_t n_anchors, const double[::1] taps):
    """Per-point residual shift field of x against ref from anchor windows.

    NumPy equivalent: ``reference.local_shift_field(ref, x, window, max_lag, n_anchors)``
    with taps = gaussian_taps(SHIFT_SMOOTH_SIGMA). Returns float64 [L].
    """
    cdef Py_ssize_t length = ref.shape[0], n_taps = taps.shape[0]
    cdef LocalAligner la
    cdef Selector selector
    field = np.zeros(length)
    cdef double[::1] field_view = field
    if length == 0:
        return field
    if selector_init(&selector, length) != 0:
        raise MemoryError()
    if local_aligner_init(&la, length, window, max_lag + n_taps // 2) != 0:
        selector_free(&selector)
        raise MemoryError()
    try:
        with nogil:
            la.n_anchor_found = find_anchors(&ref[0], length, n_anchors, window, 8.0,
                                             la.candidates, la.anchors, &selector)
            local_shift_field_line(&la, &ref[0], &x[0], window, max_lag, &taps[0], n_taps,
                                   &field_view[0])
    finally:
        local_aligner_free(&la)
        selector_free(&selector)
    return field
