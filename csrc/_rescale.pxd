# Re-scaling and fusion of METHOD 2.2 and 3.1: the amplitude scale over a mask (least squares,
# inverse or Deming), fusion weights with the water-filling cap, weighted fusion.
# The nogil core of rescale.pyx, shared with the ladder chain.

from libc.math cimport NAN, isfinite, isnan, pow, sqrt
from libc.stdint cimport uint8_t

# Fusion weight methods (PreprocessOptions.weights); anything else is WEIGHTS_UNKNOWN.
cdef enum:
    WEIGHTS_SNR = 0
    WEIGHTS_T = 1
    WEIGHTS_TOP = 2
    WEIGHTS_UNKNOWN = 3

# fusion_weights_into results: 0, or why the reference's fusion_weights raises.
cdef enum:
    FUSION_OK = 0
    FUSION_FAILED = 1


# Scale methods (PreprocessOptions.scale_method, reference.SCALE_METHODS).
cdef enum:
    SCALE_DEMING = 0
    SCALE_LS = 1
    SCALE_INVERSE = 2


cdef inline double scale_masked(const double* ref, const double* x, const uint8_t* mask,
                                Py_ssize_t n, int method, double noise_ref,
                                double noise_x) noexcept nogil:
    """Amplitude scale s with s * x ~= ref on the mask (METHOD 2.2): "ls" Sxy / Sxx,
    "inverse" Syy / Sxy, "deming" the errors-in-variables fit with both noises; NaN where
    the reference returns NaN.

    NumPy equivalent: ``reference.ls_scale(ref, x, mask, method, noise_ref, noise_x)``.
    """
    cdef Py_ssize_t i
    cdef double sxx = 0.0, syy = 0.0, sxy = 0.0, d, spread, root
    for i in range(n):
        if mask[i]:
            sxx += x[i] * x[i]
            syy += ref[i] * ref[i]
            sxy += ref[i] * x[i]
    if method == SCALE_LS or (method == SCALE_DEMING and noise_x == 0.0):
        return sxy / sxx if sxx != 0 else NAN
    if sxy == 0:
        return NAN
    if method == SCALE_INVERSE or noise_ref == 0.0:
        return syy / sxy
    d = pow(noise_ref / noise_x, 2.0)        # Python's float ** 2
    spread = syy - d * sxx
    root = sqrt(spread * spread + 4.0 * d * sxy * sxy)
    if spread >= 0.0:
        return (spread + root) / (2.0 * sxy)
    return 2.0 * d * sxy / (root - spread)   # the same root, without cancellation


cdef inline double power_like_numpy(double base, double exponent) noexcept nogil:
    # ndarray ** float: NumPy's fast paths for the common exponents, pow() otherwise.
    if exponent == 2.0:
        return base * base
    if exponent == 1.0:
        return base
    if exponent == 0.5:
        return sqrt(base)
    if exponent == -1.0:
        return 1.0 / base
    if exponent == 0.0:
        return 1.0
    return pow(base, exponent)


cdef inline int water_fill(double* weights, Py_ssize_t rungs, double cap,
                           uint8_t* capped) noexcept nogil:
    """Cap every normalised weight at `cap`, sharing the excess among the uncapped rungs in
    proportion to their weights. NumPy equivalent: ``reference._water_fill(weights, cap)``.
    FUSION_FAILED where the uncapped rungs weigh nothing: the reference then divides by
    zero and returns NaN weights, which this kernel does not produce."""
    cdef Py_ssize_t k, n_capped
    cdef bint any_over
    cdef double remaining, free_total, factor
    for k in range(rungs):
        capped[k] = 0
    while True:
        any_over = False
        for k in range(rungs):
            if weights[k] > cap + 1e-15 and not capped[k]:
                capped[k] = 1
                any_over = True
        if not any_over:
            return FUSION_OK
        n_capped = 0
        free_total = 0.0
        for k in range(rungs):
            if capped[k]:
                weights[k] = cap
                n_capped += 1
            else:
                free_total += weights[k]
        remaining = 1.0 - cap * n_capped
        if n_capped == rungs:
            continue
        if free_total == 0.0:
            return FUSION_FAILED
        factor = remaining / free_total
        for k in range(rungs):
            if not capped[k]:
                weights[k] *= factor


cdef inline int fusion_weights_into(const double* snr, Py_ssize_t rungs, double t_hat,
                                    int method, double gamma, bint has_cap, double cap,
                                    double* weights, uint8_t* capped) noexcept nogil:
    """Normalised fusion weights of METHOD 3.1; FUSION_FAILED where the reference raises
    (unknown method, no usable weight, cap outside [1/R, 1]) or returns NaN weights (a cap
    whose excess has no uncapped weight to go to).

    NumPy equivalent: ``reference.fusion_weights(snr, t_hat, method, gamma, w_max)``.
    """
    cdef Py_ssize_t k
    cdef double total = 0.0, value
    if method == WEIGHTS_UNKNOWN:
        return FUSION_FAILED
    for k in range(rungs):
        if method == WEIGHTS_SNR:
            value = snr[k] if (snr[k] >= 0.0 or isnan(snr[k])) else 0.0   # np.maximum
            weights[k] = power_like_numpy(value, gamma)
        elif method == WEIGHTS_T:
            weights[k] = pow(t_hat, gamma * k)
        else:
            weights[k] = 1.0 if k == rungs - 1 else 0.0
    for k in range(rungs):
        if not isfinite(weights[k]):
            return FUSION_FAILED
        total += weights[k]
    if not total > 0:
        return FUSION_FAILED
    for k in range(rungs):
        weights[k] = weights[k] / total
    if has_cap:
        if not (1.0 / rungs <= cap <= 1.0):
            return FUSION_FAILED
        return water_fill(weights, rungs, cap, capped)
    return FUSION_OK


cdef inline void fuse_rows(const double* rows, const double* weights, Py_ssize_t rungs,
                           Py_ssize_t n, double* out) noexcept nogil:
    """out = sum_k w_k rows[k] / sum_k w_k. NumPy equivalent: ``reference.fuse(rows, w)``."""
    cdef Py_ssize_t i, k
    cdef double total = 0.0, w
    for k in range(rungs):
        total += weights[k]
    w = weights[0]
    for i in range(n):
        out[i] = w * rows[i]
    for k in range(1, rungs):
        w = weights[k]
        for i in range(n):
            out[i] += w * rows[k * n + i]
    for i in range(n):
        out[i] = out[i] / total
