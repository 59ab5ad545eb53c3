# Masks of METHOD 2.3 on one line: sliding-count dilation/erosion, Savitzky-Golay smoothing,
# and the median + alpha * MAD threshold. The nogil core of masks.pyx, shared with the ladder
# chain and with robust.pyx (robust_scale's signal mask).

from libc.math cimport ceil
from libc.stdint cimport uint8_t
from libc.string cimport memset

from _common cimport floating, nmr_smooth_padded
from _robust cimport Selector, WANT_MAD, WANT_MEDIAN, robust_stats_of



cdef enum:
    DOUBLING_MAX_RADIUS = 64    # up to here dilation ORs doubling windows (log2(2r) passes)


cdef inline void dilate_line(const uint8_t* mask, Py_ssize_t n, Py_ssize_t radius,
                             bint erode, uint8_t* scratch, uint8_t* out) noexcept nogil:
    """Dilation by `radius` points, False outside the line; with `erode`, the erosion
    ``~dilate(~mask)``, True outside.

    NumPy equivalent: ``reference.dilate(mask, radius)`` / ``reference.erode(mask, radius)``.
    Small radii OR windows of doubling width (a few vectorised passes); larger ones slide a
    count over the window [i - r, i + r] (O(n)). `scratch` holds 3 n + 256 bytes; out may not
    alias mask.
    """
    cdef Py_ssize_t i, r, width, quarter, length, step
    cdef Py_ssize_t c0 = 0, c1 = 0, c2 = 0, c3 = 0
    cdef uint8_t flip = 1 if erode else 0
    cdef uint8_t* padded = scratch
    cdef uint8_t* src
    cdef uint8_t* dst
    cdef uint8_t* swap
    if n <= 0:
        return
    if radius <= 0:
        for i in range(n):
            out[i] = mask[i] != 0
        return
    # A window wider than the line sees all of it: clamping r keeps the scratch at 3n.
    r = radius if radius < n else n
    width = 2 * r
    length = n + width
    memset(padded, 0, r)
    memset(padded + r + n, 0, r)
    for i in range(n):
        padded[r + i] = (mask[i] != 0) ^ flip

    if r <= DOUBLING_MAX_RADIUS:
        # src[i] holds the OR of padded[i : i + step]; each pass doubles step, a last pass
        # joins two overlapping windows into one of 2 r + 1.
        src = padded
        dst = padded + length
        step = 1
        while 2 * step <= width + 1:
            for i in range(length - step):
                dst[i] = src[i] | src[i + step]
            step *= 2
            swap = src
            src = dst
            dst = swap
        for i in range(n):
            out[i] = (src[i] | src[i + width + 1 - step]) ^ flip
        return

    # Four quarters slide side by side: four independent running counts instead of one
    # chain of dependent adds.
    quarter = n // 4
    for i in range(width):
        c0 += padded[i]
        c1 += padded[quarter + i]
        c2 += padded[2 * quarter + i]
        c3 += padded[3 * quarter + i]
    for i in range(quarter):
        c0 += padded[i + width]
        c1 += padded[quarter + i + width]
        c2 += padded[2 * quarter + i + width]
        c3 += padded[3 * quarter + i + width]
        out[i] = (c0 != 0) ^ flip
        out[quarter + i] = (c1 != 0) ^ flip
        out[2 * quarter + i] = (c2 != 0) ^ flip
        out[3 * quarter + i] = (c3 != 0) ^ flip
        c0 -= padded[i]
        c1 -= padded[quarter + i]
        c2 -= padded[2 * quarter + i]
        c3 -= padded[3 * quarter + i]
    for i in range(4 * quarter, n):      # the last n % 4 points continue the fourth count
        c3 += padded[i + width]
        out[i] = (c3 != 0) ^ flip
        c3 -= padded[i]


cdef inline void dilate_components_line(const uint8_t* mask, Py_ssize_t n, Py_ssize_t radius,
                                        double relative, Py_ssize_t* cover,
                                        uint8_t* out) noexcept nogil:
    """Grow every run of True values by max(radius, ceil(relative * run length)) points.

    NumPy equivalent: ``reference.dilate_components(mask, radius, relative)`` (relative = 0:
    ``reference.dilate``), with its difference array of covered intervals. radius >= 0,
    relative finite; `cover` holds n + 1 counts.
    """
    cdef Py_ssize_t i, start, running = 0
    cdef double reach, lo, hi
    for i in range(n + 1):
        cover[i] = 0
    i = 0
    while i < n:
        if not mask[i]:
            i += 1
            continue
        start = i
        while i < n and mask[i]:
            i += 1
        reach = ceil(relative * <double>(i - start))
        if radius > reach:
            reach = <double>radius
        lo = <double>start - reach       # in double: a huge reach cannot overflow
        hi = <double>i + reach
        cover[<Py_ssize_t>lo if lo > 0 else 0] += 1
        cover[<Py_ssize_t>hi if hi < n else n] -= 1
    for i in range(n):
        running += cover[i]
        out[i] = running > 0


cdef inline void smooth_line(const floating* x, Py_ssize_t n, double scale, const double* taps,
                             Py_ssize_t window, double* padded, double* out) noexcept nogil:
    """Savitzky-Golay smoothing of scale * x, edges extended with the nearest value:
    ``out[i] = sum_j padded[i + j] * taps[j]`` with taps = savgol_coeffs(window, p)[::-1].

    NumPy equivalent: ``reference.smooth(scale * x, window, p)``; scipy:
    ``savgol_filter(scale * x, window, p, mode="nearest")``. window <= 1: out = scale * x.
    `padded` holds n + window values. n >= 1.
    """
    cdef Py_ssize_t i, half
    cdef double first, last
    if window <= 1:
        for i in range(n):
            out[i] = scale * x[i]
        return
    half = window // 2
    first = scale * x[0]
    last = scale * x[n - 1]
    for i in range(half):
        padded[i] = first
        padded[half + n + i] = last
    for i in range(n):
        padded[half + i] = scale * x[i]
    nmr_smooth_padded(padded, n, taps, window, out)


cdef inline double threshold_line(const double* envelope, Py_ssize_t n, double alpha,
                                  uint8_t* out, Selector* s) noexcept nogil:
    """out = envelope >= median + alpha * mad_sigma (of the envelope); returns the threshold.

    NumPy equivalent: ``reference.threshold_mask`` given the pointwise maximum over rungs.
    """
    cdef double median = 0.0, unused = 0.0, sigma = 0.0, tau
    cdef Py_ssize_t i
    robust_stats_of(envelope, n, 0.0, WANT_MEDIAN | WANT_MAD, &median, &unused, &sigma, s)
    tau = median + alpha * sigma
    for i in range(n):
        out[i] = envelope[i] >= tau
    return tau


cdef inline void zscore_envelope(const floating* rows, Py_ssize_t n_rows, Py_ssize_t length,
                                 const double* taps, Py_ssize_t window, const double* noise,
                                 double* padded, double* line, double* envelope) noexcept nogil:
    """envelope = max_k smooth(rows[k]) / noise[k] (noise NULL: no division).

    NumPy equivalent: ``np.max(reference.smooth(rows, window, p) / noise[:, None], axis=0)``.
    padded holds length + window values, line and envelope length each.
    """
    cdef Py_ssize_t i, k
    cdef double divisor
    cdef double* out
    for k in range(n_rows):
        out = envelope if k == 0 else line
        smooth_line(rows + k * length, length, 1.0, taps, window, padded, out)
        if noise != NULL:
            divisor = noise[k]
            for i in range(length):
                out[i] = out[i] / divisor
        if k > 0:
            for i in range(length):
                envelope[i] = line[i] if line[i] > envelope[i] else envelope[i]


cdef inline void candidate_peaks(const floating* rows, Py_ssize_t n_rows, Py_ssize_t length,
                                 const double* taps, const Py_ssize_t* tap_counts,
                                 Py_ssize_t n_windows, const double* noise, double alpha,
                                 double* padded, double* line, double* envelope,
                                 uint8_t* scratch, uint8_t* candidates,
                                 Selector* s) noexcept nogil:
    """Union over smoothing windows of threshold_mask(smooth(rows, window) / noise, alpha).

    NumPy equivalent: the candidates of ``reference.peak_and_baseline_masks``. taps holds the
    reversed Savitzky-Golay taps of every window back to back, tap_counts their lengths (1
    for no smoothing); padded holds length + the largest count values.
    """
    cdef Py_ssize_t w, i, offset = 0
    memset(candidates, 0, length)
    for w in range(n_windows):
        zscore_envelope(rows, n_rows, length, taps + offset, tap_counts[w], noise, padded, line,
                        envelope)
        threshold_line(envelope, length, alpha, scratch, s)
        for i in range(length):
            candidates[i] |= scratch[i]
        offset += tap_counts[w]
