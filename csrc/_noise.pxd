# Noise level of one spectrum without a ladder: the two-pass robust scaling used at inference
# and for the ladder chain's first noise estimate. Shared by robust.pyx and ladder.pyx.

from libc.math cimport fabs
from libc.stdint cimport uint8_t

from _common cimport floating
from _masks cimport dilate_line
from _robust cimport (
    WANT_MAD,
    WANT_MEDIAN,
    Selector,
    gather_masked,
    mad_sigma_around,
    mad_sigma_detrended_of,
    robust_stats_of,
)


cdef inline void robust_scale_of(const floating* x, Py_ssize_t n, double alpha,
                                 Py_ssize_t radius, Py_ssize_t trend_radius, uint8_t* signal,
                                 uint8_t* baseline, uint8_t* padded, Selector* s,
                                 double* center, double* sigma, bint want_center=True,
                                 bint center_known=False) noexcept nogil:
    """Baseline level and noise sigma of x[:n] (n >= 1): median and MAD sigma over all
    points; then, if at least max(16, n // 10) points are left when everything further than
    alpha sigma from the median, dilated by `radius`, is masked out, the median and the
    detrended MAD sigma over those points.

    NumPy equivalent: ``reference.robust_scale(x, alpha, radius, trend_radius)``.
    signal and baseline hold n bytes, padded 3 n + 256 (dilate_line). Without want_center,
    the second pass leaves center at the first pass's value (sigma alone is wanted); with
    center_known, center holds the median of x on entry.
    """
    cdef Py_ssize_t i, baseline_count = 0, needed, count
    cdef double unused = 0.0, limit
    if center_known:
        sigma[0] = mad_sigma_around(x, n, center[0], s)
    else:
        robust_stats_of(x, n, 0.0, WANT_MEDIAN | WANT_MAD, center, &unused, sigma, s)
    limit = alpha * sigma[0]
    for i in range(n):
        signal[i] = fabs(<double>x[i] - center[0]) > limit
    dilate_line(signal, n, radius, False, padded, baseline)
    for i in range(n):
        baseline[i] = not baseline[i]
        baseline_count += baseline[i]
    needed = n // 10 if n // 10 > 16 else 16
    if baseline_count >= needed:
        if want_center:
            count = gather_masked(x, baseline, n, <floating*>s.gathered)
            robust_stats_of(<floating*>s.gathered, count, 0.0, WANT_MEDIAN, center, &unused,
                            &unused, s)
        sigma[0] = mad_sigma_detrended_of(x, baseline, n, trend_radius, s)
