"""Robust statistics: median, percentile and MAD sigma per row (masked or not), and the
two-pass inference scaling robust_scale, batched over rows with OpenMP.

Selection is the radix select of _robust.pxd (no sort). NumPy equivalents are named in each
docstring; nmrladder.runtime.preprocess validates inputs (no NaN/Inf, C-contiguous rows)
before calling in.
"""

import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdint cimport uint8_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from _common cimport floating, nmr_standardise_f32, nmr_standardise_f64, resolve_threads
from _noise cimport robust_scale_of
from _robust cimport (
    WANT_MAD,
    WANT_MEDIAN,
    WANT_PERCENTILE,
    Selector,
    gather_masked,
    mad_sigma_detrended_of,
    robust_stats_of,
    selector_free,
    selector_init,
)

MEDIAN = WANT_MEDIAN
PERCENTILE = WANT_PERCENTILE
MAD = WANT_MAD


cdef class SelectorSet:
    """One Selector per thread, for inputs of up to `capacity` values."""
    cdef Selector* items
    cdef int count
    cdef Py_ssize_t capacity

    def __cinit__(self, int count, Py_ssize_t capacity):
        cdef int t
        self.items = <Selector*>calloc(count, sizeof(Selector))
        if self.items == NULL:
            raise MemoryError()
        for t in range(count):
            if selector_init(&self.items[t], capacity) != 0:
                raise MemoryError()
            self.count = t + 1
        self.capacity = capacity

    def __dealloc__(self):
        cdef int t
        if self.items != NULL:
            for t in range(self.count):
                selector_free(&self.items[t])
            free(self.items)


# Scratch kept between calls: fresh pages cost more than the selection itself (page faults
# on first touch). Taken out while in use, so concurrent callers never share one.
_kept_selectors = []
KEEP_CAPACITY = 1 << 20      # larger scratch is not kept


cdef SelectorSet take_selectors(int count, Py_ssize_t capacity):
    cdef SelectorSet kept
    for i, kept in enumerate(_kept_selectors):
        if kept.count >= count and kept.capacity >= capacity:
            return _kept_selectors.pop(i)
    return SelectorSet(count, capacity)


cdef void keep_selectors(SelectorSet selectors):
    if selectors.capacity <= KEEP_CAPACITY:
        _kept_selectors.insert(0, selectors)
        del _kept_selectors[2:]


def robust_stats(const floating[:, ::1] x, const uint8_t[:, ::1] mask, double q, int want,
                 int threads=0):
    """Median, q-th percentile and MAD sigma of every row of x [N, L] (over mask [N, L] where
    given); `want` is a sum of MEDIAN, PERCENTILE and MAD; statistics not asked for are NaN.

    NumPy equivalent, per row: ``np.median(x[i][mask[i]])``,
    ``np.percentile(x[i][mask[i]], q)``, ``reference.mad_sigma(x[i], mask[i])``, in float64;
    NaN for an empty selection. Returns (median, percentile, sigma), float64 [N] each.
    """
    cdef Py_ssize_t n_rows = x.shape[0], length = x.shape[1], i, count
    cdef bint masked = mask is not None
    cdef int n_threads = resolve_threads(threads, n_rows)
    cdef SelectorSet selectors
    cdef Selector* s
    cdef const floating* row
    medians = np.full(n_rows, np.nan)
    percentiles = np.full(n_rows, np.nan)
    sigmas = np.full(n_rows, np.nan)
    cdef double[::1] median_view = medians
    cdef double[::1] percentile_view = percentiles
    cdef double[::1] sigma_view = sigmas
    if masked and (mask.shape[0] != n_rows or mask.shape[1] != length):
        raise ValueError("mask must have the shape of x")
    if n_rows == 0 or length == 0:
        return medians, percentiles, sigmas
    selectors = take_selectors(n_threads, length)
    try:
        for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
            s = &selectors.items[threadid()]
            row = &x[0, 0] + i * length
            count = length
            if masked:
                count = gather_masked(row, &mask[0, 0] + i * length, length,
                                      <floating*>s.gathered)
                row = <floating*>s.gathered
            robust_stats_of(row, count, q, want, &median_view[i], &percentile_view[i],
                            &sigma_view[i], s)
    finally:
        keep_selectors(selectors)
    return medians, percentiles, sigmas


def robust_scale_rows(const floating[:, ::1] x, double alpha, Py_ssize_t dilate_radius,
                      Py_ssize_t trend_radius, int threads=0):
    """Baseline level and noise sigma of every row of x [N, L] without a ladder.

    NumPy equivalent: ``reference.robust_scale_batch(x, alpha, dilate_radius, trend_radius)``:
    median and MAD sigma over all points; then, if at least max(16, L // 10) points are left
    when everything further than alpha sigma from the median, dilated by dilate_radius, is
    masked out, the median and the detrended MAD sigma over those points.
    Returns (centers, sigmas), float64 [N] each.
    """
    cdef Py_ssize_t n_rows = x.shape[0], length = x.shape[1], i
    cdef Py_ssize_t bytes_per_thread = 5 * length + 256    # 2 masks + dilate_line's scratch
    cdef int n_threads = resolve_threads(threads, n_rows)
    cdef SelectorSet selectors
    cdef uint8_t* bytes_ = NULL
    cdef uint8_t* own
    centers = np.full(n_rows, np.nan)
    sigmas = np.full(n_rows, np.nan)
    cdef double[::1] center_view = centers
    cdef double[::1] sigma_view = sigmas
    if n_rows == 0 or length == 0:
        return centers, sigmas
    selectors = take_selectors(n_threads, length)
    bytes_ = <uint8_t*>malloc(n_threads * bytes_per_thread)
    try:
        if bytes_ == NULL:
            raise MemoryError()
        for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
            own = bytes_ + threadid() * bytes_per_thread
            robust_scale_of(&x[0, 0] + i * length, length, alpha, dilate_radius,
                            trend_radius, own,
                            own + length, own + 2 * length, &selectors.items[threadid()],
                            &center_view[i], &sigma_view[i])
    finally:
        free(bytes_)
        keep_selectors(selectors)
    return centers, sigmas


def mad_sigma_detrended_rows(const floating[:, ::1] x, const uint8_t[:, ::1] mask,
                             Py_ssize_t radius, int threads=0):
    """MAD sigma of every row of x [N, L] over mask [N, L] after removing the local mean of
    the masked values within +-radius points. NumPy equivalent, per row:
    ``reference.mad_sigma_detrended(x[i], mask[i], radius)``. Returns float64 [N]."""
    cdef Py_ssize_t n_rows = x.shape[0], length = x.shape[1], i
    cdef int n_threads = resolve_threads(threads, n_rows)
    cdef SelectorSet selectors
    sigmas = np.full(n_rows, np.nan)
    cdef double[::1] sigma_view = sigmas
    if mask.shape[0] != n_rows or mask.shape[1] != length:
        raise ValueError("mask must have the shape of x")
    if n_rows == 0 or length == 0:
        return sigmas
    selectors = take_selectors(n_threads, length)
    try:
        for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
            sigma_view[i] = mad_sigma_detrended_of(&x[0, 0] + i * length,
                                                   &mask[0, 0] + i * length, length, radius,
                                                   &selectors.items[threadid()])
    finally:
        keep_selectors(selectors)
    return sigmas


def standardise_rows(const floating[:, ::1] x, const double[::1] centers,
                     const double[::1] sigmas, float[:, ::1] out):
    """out[i, :L] = (x[i] - centers[i]) / sigmas[i], float32; out[i, L:] = 0 (x [N, L],
    out [N, L_pad]): the network's input, in one pass.

    NumPy equivalent: ``out[:, :L] = (x - centers[:, None]) / sigmas[:, None]`` (float64
    arithmetic, then the cast to float32), bit for bit.
    """
    cdef Py_ssize_t n = x.shape[0], length = x.shape[1], padded = out.shape[1], i
    if out.shape[0] != n or padded < length or centers.shape[0] != n or sigmas.shape[0] != n:
        raise ValueError(
            f"standardise_rows: x {x.shape[0]}x{length}, out {out.shape[0]}x{padded}, "
            f"{centers.shape[0]} centers, {sigmas.shape[0]} sigmas"
        )
    with nogil:
        for i in range(n):
            if floating is float:
                nmr_standardise_f32(&x[i, 0], length, centers[i], sigmas[i], &out[i, 0])
            else:
                nmr_standardise_f64(&x[i, 0], length, centers[i], sigmas[i], &out[i, 0])
            memset(&out[i, 0] + length, 0, (padded - length) * sizeof(float))
