"""Re-scaling and fusion of METHOD 2.2 and 3.1: the amplitude scale over a mask (least
squares, inverse or Deming regression), fusion weights with the water-filling cap, fusion.

The weights are a handful of numbers; they are native so that the ladder chain runs without
the GIL. NumPy equivalents are named in each docstring (nmrladder.runtime.reference).
"""

import numpy as np

from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc

from _rescale cimport (
    FUSION_OK,
    WEIGHTS_SNR,
    WEIGHTS_T,
    WEIGHTS_TOP,
    WEIGHTS_UNKNOWN,
    fuse_rows,
    SCALE_DEMING,
    SCALE_INVERSE,
    SCALE_LS,
    fusion_weights_into,
    scale_masked,
)

WEIGHT_METHODS = {"snr": WEIGHTS_SNR, "t": WEIGHTS_T, "top": WEIGHTS_TOP}
UNKNOWN_WEIGHT_METHOD = WEIGHTS_UNKNOWN
SCALE_METHODS = {"deming": SCALE_DEMING, "ls": SCALE_LS, "inverse": SCALE_INVERSE}


def ls_scale(const double[::1] ref, const double[::1] x, const uint8_t[::1] mask,
             int method=SCALE_DEMING, double noise_ref=0.0, double noise_x=0.0):
    """Amplitude scale s with s * x ~= ref on the mask: least squares, inverse, or the Deming
    fit with both noises (SCALE_METHODS). NaN where the reference gives NaN.

    NumPy equivalent: ``reference.ls_scale(ref, x, mask, method, noise_ref, noise_x)``.
    """
    if ref.shape[0] == 0:
        return float("nan")
    return scale_masked(&ref[0], &x[0], &mask[0], ref.shape[0], method, noise_ref, noise_x)


def fusion_weights(const double[::1] snr, double t_hat, int method, double gamma,
                   bint has_cap, double cap):
    """Normalised fusion weights of METHOD 3.1 (sum 1), capped at `cap` by water-filling.

    NumPy equivalent: ``reference.fusion_weights(snr, t_hat, method, gamma, w_max)``.
    Returns the weights, or None where the reference raises (the caller asks it why).
    """
    cdef Py_ssize_t rungs = snr.shape[0]
    cdef uint8_t* capped
    weights = np.zeros(rungs)
    cdef double[::1] view = weights
    cdef int status
    if rungs == 0:
        return None
    capped = <uint8_t*>malloc(rungs)
    if capped == NULL:
        raise MemoryError()
    try:
        status = fusion_weights_into(&snr[0], rungs, t_hat, method, gamma, has_cap, cap,
                                     &view[0], capped)
    finally:
        free(capped)
    return weights if status == FUSION_OK else None


def fuse(const double[:, ::1] rows, const double[::1] weights):
    """Weighted mean of the rows [R, L]: ``sum_k w_k x_k / sum_k w_k``.

    NumPy equivalent: ``reference.fuse(rows, weights)``. Returns float64 [L].
    """
    cdef Py_ssize_t rungs = rows.shape[0], length = rows.shape[1]
    out = np.zeros(length)
    cdef double[::1] view = out
    if rungs == 0 or length == 0:
        return out
    with nogil:
        fuse_rows(&rows[0, 0], &weights[0], rungs, length, &view[0])
    return out
