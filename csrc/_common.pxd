# Shared by every kernel module: C headers, fused types and the thread-count rule.
# Inline nogil helpers here are compiled into each module that cimports them.

from libc.stdint cimport uint8_t, uint64_t

ctypedef fused floating:
    float
    double

cdef extern from "order_keys.h" nogil:
    uint64_t nmr_key_f32(float value)
    uint64_t nmr_key_f64(double value)
    float nmr_value_f32(uint64_t key)
    double nmr_value_f64(uint64_t key)
    int nmr_varying_bits(uint64_t lo, uint64_t hi)
    int nmr_nonfinite_f32(float value)
    int nmr_nonfinite_f64(double value)
    void nmr_count_bracket_f32(const float* x, Py_ssize_t n, float lo, float hi,
                               Py_ssize_t* below, Py_ssize_t* up_to)
    void nmr_count_bracket_f64(const double* x, Py_ssize_t n, double lo, double hi,
                               Py_ssize_t* below, Py_ssize_t* up_to)
    Py_ssize_t nmr_gather_bracket_f32(const float* x, Py_ssize_t n, float lo, float hi,
                                      float* out)
    Py_ssize_t nmr_gather_bracket_f64(const double* x, Py_ssize_t n, double lo, double hi,
                                      double* out)
    void nmr_deviations_f32(const float* x, Py_ssize_t n, double center, double* out)
    void nmr_standardise_f32(const float* x, Py_ssize_t n, double center, double sigma,
                             float* out)
    void nmr_standardise_f64(const double* x, Py_ssize_t n, double center, double sigma,
                             float* out)
    void nmr_deviations_f64(const double* x, Py_ssize_t n, double center, double* out)
    void nmr_smooth_padded(const double* padded, Py_ssize_t n, const double* taps,
                           Py_ssize_t window, double* out)
    Py_ssize_t nmr_detrended_residuals_f32(const float* x, const uint8_t* mask, Py_ssize_t n,
                                           Py_ssize_t radius, const double* sums,
                                           const double* counts, double* trend, double* out)
    Py_ssize_t nmr_detrended_residuals_f64(const double* x, const uint8_t* mask, Py_ssize_t n,
                                           Py_ssize_t radius, const double* sums,
                                           const double* counts, double* trend, double* out)

cdef extern from "threads.h" nogil:
    int nmr_max_threads()

cdef extern from *:
    """
    /* nmrladder.runtime.conventions.MAD_TO_SIGMA */
    #define NMR_MAD_TO_SIGMA 1.4826
    """
    const double MAD_TO_SIGMA "NMR_MAD_TO_SIGMA"


cdef inline int resolve_threads(int requested, Py_ssize_t n_items) noexcept nogil:
    """Threads for n_items independent items: requested (<= 0: all OpenMP threads), at most n_items."""
    cdef int threads = requested if requested > 0 else nmr_max_threads()
    if threads > n_items:
        threads = <int>n_items
    return threads if threads > 0 else 1


cdef inline Py_ssize_t positive_mod(Py_ssize_t a, Py_ssize_t n) noexcept nogil:
    """a mod n in [0, n), as Python's % (C's % keeps the sign of a)."""
    cdef Py_ssize_t m = a % n
    return m + n if m < 0 else m


cdef inline Py_ssize_t wrap_index(Py_ssize_t a, Py_ssize_t n) noexcept nogil:
    """a mod n for the common case of a within one period of [0, n) (no division)."""
    if a < 0:
        a += n
        return a if a >= 0 else positive_mod(a, n)
    if a >= n:
        a -= n
        return a if a < n else positive_mod(a, n)
    return a


cdef inline Py_ssize_t count_nonfinite(const floating* x, Py_ssize_t n) noexcept nogil:
    """Number of NaN/Inf values; NumPy equivalent: ``(~np.isfinite(x)).sum()``."""
    cdef Py_ssize_t i, bad = 0
    for i in range(n):
        if floating is float:
            bad += nmr_nonfinite_f32(x[i])
        else:
            bad += nmr_nonfinite_f64(x[i])
    return bad


cdef inline bint any_true(const uint8_t* mask, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if mask[i]:
            return True
    return False
