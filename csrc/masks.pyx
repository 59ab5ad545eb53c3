"""Masks of METHOD 2.3: dilation/erosion by a sliding count, Savitzky-Golay smoothing,
the median + alpha * MAD threshold of the pointwise maximum over rungs, and the peak and
baseline masks, batched over rows with OpenMP where the input is a batch.

NumPy equivalents are named in each docstring (nmrladder.runtime.reference); masks are
uint8 0/1 arrays here and bool arrays in the dispatch layer.
"""

import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc

from _common cimport any_true, floating, resolve_threads
from _masks cimport (
    candidate_peaks,
    dilate_components_line,
    dilate_line,
    smooth_line,
    threshold_line,
    zscore_envelope,
)
from _robust cimport Selector, selector_free, selector_init


def dilate_rows(const uint8_t[:, ::1] mask, Py_ssize_t radius, bint erode=False,
                int threads=0):
    """Dilation (or, with `erode`, erosion) of every row of mask [N, L] by `radius` points.

    NumPy equivalent: ``reference.dilate(mask, radius)`` / ``reference.erode(mask, radius)``
    (False outside the row for dilation, True for erosion). Returns uint8 [N, L].
    """
    cdef Py_ssize_t n_rows = mask.shape[0], length = mask.shape[1], i
    cdef Py_ssize_t pad_bytes = 3 * length + 256     # dilate_line's scratch
    cdef int n_threads = resolve_threads(threads, n_rows)
    cdef uint8_t* padded = NULL
    out = np.empty((n_rows, length), dtype=np.uint8)
    cdef uint8_t[:, ::1] out_view = out
    if n_rows == 0 or length == 0:
        return out
    padded = <uint8_t*>malloc(n_threads * pad_bytes)
    if padded == NULL:
        raise MemoryError()
    try:
        for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
            dilate_line(&mask[0, 0] + i * length, length, radius, erode,
                        padded + threadid() * pad_bytes, &out_view[0, 0] + i * length)
    finally:
        free(padded)
    return out


def dilate_components_rows(const uint8_t[:, ::1] mask, Py_ssize_t radius, double relative,
                           int threads=0):
    """Every run of True values of every row of mask [N, L] grown by
    max(radius, ceil(relative * run length)) points (False outside the row).

    NumPy equivalent: ``reference.dilate_components(mask[i], radius, relative)`` per row.
    Returns uint8 [N, L].
    """
    cdef Py_ssize_t n_rows = mask.shape[0], length = mask.shape[1], i
    cdef int n_threads = resolve_threads(threads, n_rows)
    cdef Py_ssize_t* cover = NULL
    out = np.empty((n_rows, length), dtype=np.uint8)
    cdef uint8_t[:, ::1] out_view = out
    if n_rows == 0 or length == 0:
        return out
    cover = <Py_ssize_t*>malloc(n_threads * (length + 1) * sizeof(Py_ssize_t))
    if cover == NULL:
        raise MemoryError()
    try:
        for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
            dilate_components_line(&mask[0, 0] + i * length, length, radius, relative,
                                   cover + threadid() * (length + 1),
                                   &out_view[0, 0] + i * length)
    finally:
        free(cover)
    return out


def smooth_rows(const floating[:, ::1] x, const double[::1] taps, int threads=0):
    """Savitzky-Golay smoothing of every row of x [N, L], edges extended with the nearest
    value; taps = savgol_coeffs(window, polyorder)[::-1] (odd window).

    NumPy equivalent: ``reference.smooth(x, window, polyorder)``; scipy:
    ``savgol_filter(x, window, polyorder, mode="nearest")``. Returns float64 [N, L].
    """
    cdef Py_ssize_t n_rows = x.shape[0], length = x.shape[1], window = taps.shape[0], i
    cdef Py_ssize_t pad_values = length + window
    cdef int n_threads = resolve_threads(threads, n_rows)
    cdef double* padded = NULL
    out = np.empty((n_rows, length), dtype=np.float64)
    cdef double[:, ::1] out_view = out
    if n_rows == 0 or length == 0:
        return out
    padded = <double*>malloc(n_threads * pad_values * sizeof(double))
    if padded == NULL:
        raise MemoryError()
    try:
        for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="static"):
            smooth_line(&x[0, 0] + i * length, length, 1.0, &taps[0], window,
                        padded + threadid() * pad_values, &out_view[0, 0] + i * length)
    finally:
        free(padded)
    return out


def threshold_mask(const floating[:, ::1] spectra, double alpha):
    """Candidate peak points of spectra [R, L]: max_k x_k >= median + alpha * mad_sigma of
    that maximum. NumPy equivalent: ``reference.threshold_mask(spectra, alpha)``.
    Returns uint8 [L]."""
    cdef Py_ssize_t length = spectra.shape[1]
    cdef double no_smoothing = 1.0
    cdef int status = 0
    peak = np.zeros(length, dtype=np.uint8)
    cdef uint8_t[::1] peak_view = peak
    if spectra.shape[0] and length:
        with nogil:
            status = masks_into(&spectra[0, 0], spectra.shape[0], length, &no_smoothing, NULL,
                                1, 1, NULL, alpha, -1, 0.0, 0, &peak_view[0], NULL)
        if status != 0:
            raise MemoryError()
    return peak


def peak_and_baseline_masks(const floating[:, ::1] spectra, const double[::1] noise,
                            double alpha, Py_ssize_t dilate_radius, double dilate_relative,
                            Py_ssize_t erode_radius, const double[::1] taps,
                            const Py_ssize_t[::1] tap_counts):
    """Peak mask M and baseline mask B of METHOD 2.3 from rungs [R, L] and their noise [R]:
    candidates = union over smoothing windows of threshold(max_k smooth(x_k) / noise_k),
    M = dilate_components(candidates, dilate_radius, dilate_relative),
    B = ~dilate(M, erode_radius).

    NumPy equivalent: ``reference.peak_and_baseline_masks(spectra, noise, alpha,
    dilate_radius, dilate_relative, erode_radius, windows, polyorder)``; taps holds
    savgol_coeffs(window, polyorder)[::-1] of every window back to back, tap_counts their
    lengths. Returns (M, B), uint8 [L] each.
    """
    cdef Py_ssize_t length = spectra.shape[1], widest = 1, w
    cdef int status = 0
    peak = np.zeros(length, dtype=np.uint8)
    base = np.zeros(length, dtype=np.uint8)
    cdef uint8_t[::1] peak_view = peak
    cdef uint8_t[::1] base_view = base
    if noise.shape[0] != spectra.shape[0] or tap_counts.shape[0] == 0:
        raise ValueError("noise needs one value per row of spectra, and one window at least")
    for w in range(tap_counts.shape[0]):
        widest = tap_counts[w] if tap_counts[w] > widest else widest
    if spectra.shape[0] and length:
        with nogil:
            status = masks_into(&spectra[0, 0], spectra.shape[0], length, &taps[0],
                                &tap_counts[0], tap_counts.shape[0], widest, &noise[0], alpha,
                                dilate_radius, dilate_relative, erode_radius, &peak_view[0],
                                &base_view[0])
        if status != 0:
            raise MemoryError()
    return peak, base


cdef int masks_into(const floating* spectra, Py_ssize_t n_rows, Py_ssize_t length,
                    const double* taps, const Py_ssize_t* tap_counts, Py_ssize_t n_windows,
                    Py_ssize_t widest, const double* noise, double alpha,
                    Py_ssize_t dilate_radius, double dilate_relative, Py_ssize_t erode_radius,
                    uint8_t* peak, uint8_t* base) noexcept nogil:
    # The threshold mask into peak when dilate_radius < 0, else M and B; -1 if out of memory.
    cdef Selector selector
    cdef double* doubles = <double*>malloc((3 * length + widest) * sizeof(double))
    cdef uint8_t* bytes_ = <uint8_t*>malloc(5 * length + 256)
    cdef Py_ssize_t* cover = <Py_ssize_t*>malloc((length + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t i
    cdef int status = -1
    if (doubles != NULL and bytes_ != NULL and cover != NULL
            and selector_init(&selector, length) == 0):
        if dilate_radius < 0:
            zscore_envelope(spectra, n_rows, length, taps, 1, NULL, doubles + 2 * length,
                            doubles + length, doubles)
            threshold_line(doubles, length, alpha, peak, &selector)
        else:
            candidate_peaks(spectra, n_rows, length, taps, tap_counts, n_windows, noise, alpha,
                            doubles + 2 * length, doubles + length, doubles,
                            bytes_ + length, bytes_, &selector)
            dilate_components_line(bytes_, length, dilate_radius, dilate_relative, cover, peak)
            dilate_line(peak, length, erode_radius, False, bytes_ + length, bytes_)
            for i in range(length):
                base[i] = not bytes_[i]
        selector_free(&selector)
        status = 0
    free(doubles)
    free(bytes_)
    free(cover)
    return status
