# Alignment of METHOD 2.1 on one line: circular cross-correlation over a lag range (direct,
# lag-blocked, or by FFT, chosen by a cost model), Gaussian smoothing of the correlation and
# log-parabola refinement of its peak, shift application by linear interpolation with wrap
# (constant or per-point shift), and the anchor-window local shift field.
# The nogil core of align.pyx, shared with the ladder chain.

from libc.math cimport fabs, floor, fmod, log, nearbyint, sqrt
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcpy

from _common cimport floating, positive_mod, wrap_index
from _robust cimport Selector, WANT_MAD, WANT_MEDIAN, robust_stats_of

cdef extern from "correlate.h" nogil:
    Py_ssize_t nmr_padded_lags(Py_ssize_t n_lags)
    void nmr_correlate_direct(const double* r, const double* u, Py_ssize_t n,
                              Py_ssize_t n_lags, double* c)
    Py_ssize_t nmr_fft_size(Py_ssize_t n)
    void nmr_fft_twiddles(Py_ssize_t size, double* twiddles)
    void nmr_correlate_fft(const double* r, const double* u, Py_ssize_t n, Py_ssize_t n_lags,
                           double* c, Py_ssize_t size, double* z, double* spectrum,
                           const double* twiddles)
    bint nmr_prefer_fft(Py_ssize_t n, Py_ssize_t n_lags)
    double nmr_sum_f32(const float* x, Py_ssize_t n)
    double nmr_sum_f64(const double* x, Py_ssize_t n)
    double nmr_sum_squares_f64(const double* x, Py_ssize_t n)
    void nmr_correlate_screen(const float* r, const float* u, Py_ssize_t n, Py_ssize_t n_lags,
                              double* c)
    double nmr_screen_bound()

# How a Correlator computes: by the cost model, or forced.
cdef enum:
    CORRELATE_AUTO = 0
    CORRELATE_DIRECT = 1
    CORRELATE_FFT = 2
    SCREEN_MIN_LENGTH = 4096    # estimate_shift screens in float32 from this length on


cdef struct Correlator:
    # Scratch of one thread for correlations of length-n lines over lags -half_lags..half_lags.
    Py_ssize_t n
    Py_ssize_t half_lags
    Py_ssize_t n_lags           # 2 * half_lags + 1
    bint use_fft
    double* r                   # the centred reference, n
    double* u                   # the centred line, periodically extended
    double* c                   # the correlation, n_lags (padded to the lag block)
    double* smoothed            # the smoothed correlation
    Py_ssize_t fft_size
    double* z
    double* spectrum
    double* twiddles
    bint screen                 # estimate_shift_with screens in float32 (see there)
    float* r32
    float* u32
    double r_norm               # ||r||
    double v_norm               # ||v|| of the last line correlated
    uint8_t* needed             # lags recomputed exactly


cdef inline int correlator_init(Correlator* cr, Py_ssize_t n, Py_ssize_t half_lags,
                                int method) noexcept nogil:
    """Scratch for lines of n points and lags within +-half_lags; 0 on success, -1 if out of
    memory. method: CORRELATE_AUTO (cost model), CORRELATE_DIRECT or CORRELATE_FFT."""
    cdef Py_ssize_t padded
    cr.n = n
    cr.half_lags = half_lags
    cr.n_lags = 2 * half_lags + 1
    padded = nmr_padded_lags(cr.n_lags)
    cr.use_fft = method == CORRELATE_FFT or (method == CORRELATE_AUTO
                                              and nmr_prefer_fft(n, cr.n_lags))
    cr.fft_size = nmr_fft_size(n + distinct_lags(cr) - 1) if cr.use_fft else 0
    cr.screen = not cr.use_fft and n >= SCREEN_MIN_LENGTH and cr.n_lags <= n
    cr.r = <double*>malloc(n * sizeof(double))
    cr.u = <double*>malloc((n + padded) * sizeof(double))
    cr.c = <double*>malloc(padded * sizeof(double))
    cr.smoothed = <double*>malloc(padded * sizeof(double))
    cr.needed = <uint8_t*>malloc(padded)
    cr.r32 = <float*>malloc(n * sizeof(float)) if cr.screen else NULL
    cr.u32 = <float*>malloc((n + padded) * sizeof(float)) if cr.screen else NULL
    cr.z = NULL
    cr.spectrum = NULL
    cr.twiddles = NULL
    if cr.use_fft:
        cr.z = <double*>malloc(2 * cr.fft_size * sizeof(double))
        cr.spectrum = <double*>malloc(2 * cr.fft_size * sizeof(double))
        cr.twiddles = <double*>malloc(cr.fft_size * sizeof(double))
    if (cr.r == NULL or cr.u == NULL or cr.c == NULL or cr.smoothed == NULL
            or cr.needed == NULL or (cr.screen and (cr.r32 == NULL or cr.u32 == NULL))
            or (cr.use_fft and (cr.z == NULL or cr.spectrum == NULL or cr.twiddles == NULL))):
        correlator_free(cr)
        return -1
    if cr.use_fft:
        nmr_fft_twiddles(cr.fft_size, cr.twiddles)
    return 0


cdef inline void correlator_free(Correlator* cr) noexcept nogil:
    free(cr.r)
    free(cr.u)
    free(cr.c)
    free(cr.smoothed)
    free(cr.z)
    free(cr.spectrum)
    free(cr.twiddles)
    free(cr.needed)
    free(cr.r32)
    free(cr.u32)
    cr.needed = NULL
    cr.r32 = NULL
    cr.u32 = NULL
    cr.r = NULL
    cr.u = NULL
    cr.c = NULL
    cr.smoothed = NULL
    cr.z = NULL
    cr.spectrum = NULL
    cr.twiddles = NULL


cdef inline double sum_of(const floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return nmr_sum_f32(x, n)
    else:
        return nmr_sum_f64(x, n)


cdef inline double sum_of_squares(const double* x, Py_ssize_t n) noexcept nogil:
    return nmr_sum_squares_f64(x, n)


cdef inline double mean_of(const floating* x, Py_ssize_t n) noexcept nogil:
    return sum_of(x, n) / n


cdef inline void set_reference(Correlator* cr, const floating* ref) noexcept nogil:
    """The reference line, centred on its mean (in cr.r)."""
    cdef Py_ssize_t i
    cdef double mean = mean_of(ref, cr.n)
    for i in range(cr.n):
        cr.r[i] = ref[i] - mean
    if cr.screen:
        for i in range(cr.n):
            cr.r32[i] = <float>cr.r[i]
    cr.r_norm = sqrt(sum_of_squares(cr.r, cr.n))


cdef inline void extend_line(Correlator* cr, const floating* x) noexcept nogil:
    """cr.u[j] = v[(j - half_lags) mod n], v = x - mean(x): a contiguous run per lag, wrap
    included (and its float32 copy when screening); cr.v_norm = ||v||."""
    cdef Py_ssize_t i, n = cr.n, start, extent, done = 0, run
    cdef double mean = mean_of(x, n), value
    extent = n + (cr.n_lags - 1 if cr.use_fft else nmr_padded_lags(cr.n_lags) - 1)
    start = positive_mod(-cr.half_lags, n)
    while done < extent:                 # contiguous runs of x between wraps: vectorised
        run = n - start if n - start < extent - done else extent - done
        if cr.screen:
            for i in range(run):
                value = x[start + i] - mean
                cr.u[done + i] = value
                cr.u32[done + i] = <float>value
        else:
            for i in range(run):
                cr.u[done + i] = x[start + i] - mean
        done += run
        start = 0
    cr.v_norm = sqrt(sum_of_squares(cr.u, n))


cdef inline void correlate(Correlator* cr, const floating* x) noexcept nogil:
    """cr.c[j] = sum_i r_i v_{(i + j - half_lags) mod n}, v = x - mean(x), j < n_lags.

    NumPy equivalent: ``reference.cross_correlation(ref, x, half_lags)``.
    """
    extend_line(cr, x)
    run_correlation(cr)


cdef inline void run_correlation(Correlator* cr) noexcept nogil:
    # The correlation is periodic in the lag (period n): one period is computed and copied,
    # so that lags a period apart tie exactly, as the reference's do (first maximum wins).
    cdef Py_ssize_t n = cr.n, j, distinct = distinct_lags(cr)
    if cr.use_fft:
        nmr_correlate_fft(cr.r, cr.u, n, distinct, cr.c, cr.fft_size, cr.z, cr.spectrum,
                          cr.twiddles)
    else:
        nmr_correlate_direct(cr.r, cr.u, n, distinct, cr.c)
    for j in range(distinct, cr.n_lags):
        cr.c[j] = cr.c[j - n]


cdef inline Py_ssize_t distinct_lags(const Correlator* cr) noexcept nogil:
    return cr.n_lags if cr.n_lags < cr.n else cr.n


cdef inline double peak_position(const double* c, Py_ssize_t m) noexcept nogil:
    """Sub-point index of the maximum of c[:m] by a parabola through the logs of 3 points.

    NumPy equivalent: ``reference.peak_position(c)`` (first maximum wins, no refinement at
    either end, values instead of logs unless both neighbours are positive, offset within
    half a point).
    """
    cdef Py_ssize_t i, j = 0
    for i in range(1, m):
        if c[i] > c[j]:
            j = i
    if j == 0 or j == m - 1:
        return <double>j
    return refined_position(j, c[j - 1], c[j], c[j + 1])


cdef inline double refined_position(Py_ssize_t j, double left, double centre,
                                    double right) noexcept nogil:
    # reference.peak_position's refinement of the maximum j from its neighbours.
    cdef double curvature, offset
    if left > 0.0 and right > 0.0:
        left = log(left)
        centre = log(centre)
        right = log(right)
    curvature = left - 2.0 * centre + right
    if curvature >= 0.0:
        return <double>j
    offset = 0.5 * (left - right) / curvature
    if offset < -0.5:
        offset = -0.5
    elif offset > 0.5:
        offset = 0.5
    return j + offset


cdef inline double smoothed_peak(const double* c_wide, Py_ssize_t n_wide, const double* taps,
                                 Py_ssize_t n_taps, double* smoothed) noexcept nogil:
    """Peak lag of a correlation over +-(max_lag + h) after a 'valid' Gaussian smoothing.

    NumPy equivalent: ``reference.smoothed_correlation_peak(c_wide, sigma)`` with
    taps = gaussian_taps(sigma), n_taps = 2 h + 1 <= n_wide.
    """
    cdef Py_ssize_t j, t, m = n_wide - n_taps + 1
    cdef double total
    for j in range(m):
        total = 0.0
        for t in range(n_taps):
            total += c_wide[j + t] * taps[n_taps - 1 - t]
        smoothed[j] = total
    return peak_position(smoothed, m) - (m - 1) // 2


cdef inline double smooth_at(const double* c_wide, Py_ssize_t j, const double* taps,
                             Py_ssize_t n_taps) noexcept nogil:
    cdef Py_ssize_t t
    cdef double total = 0.0
    for t in range(n_taps):
        total += c_wide[j + t] * taps[n_taps - 1 - t]
    return total


cdef inline double estimate_shift_with(Correlator* cr, const floating* x, const double* taps,
                                       Py_ssize_t n_taps) noexcept nogil:
    """Shift d with x[i] ~= ref[i - d] (ref set by set_reference); cr.half_lags = max_lag + h.

    NumPy equivalent: ``reference.estimate_shift(ref, x, max_lag, sigma)``.

    Long lines are screened: the correlation in float32 (nmr_correlate_screen, twice as fast)
    is within bound = nmr_screen_bound() * ||r|| * ||v|| of the exact one at every lag, and
    so is its smoothing (non-negative taps of sum 1). Only lags whose screened smoothed value
    is within 2 bound of the screened maximum can hold the exact maximum; those and their
    neighbours are recomputed in double, and the maximum and its refinement are taken from
    exact values, as without screening.
    """
    cdef Py_ssize_t j, lag, m = cr.n_lags - n_taps + 1, best = -1, lo, hi, n_needed = 0
    cdef double bound, threshold, top, value, left, right
    if not cr.screen:
        correlate(cr, x)
        return smoothed_peak(cr.c, cr.n_lags, taps, n_taps, cr.smoothed)
    extend_line(cr, x)
    nmr_correlate_screen(cr.r32, cr.u32, cr.n, cr.n_lags, cr.c)
    for j in range(m):
        cr.smoothed[j] = smooth_at(cr.c, j, taps, n_taps)
    top = cr.smoothed[0]
    for j in range(1, m):
        top = cr.smoothed[j] if cr.smoothed[j] > top else top
    bound = nmr_screen_bound() * cr.r_norm * cr.v_norm
    threshold = top - 2.0 * bound - 1e-12 * fabs(top)
    # Lags of the candidates' smoothing windows, with one neighbour either side.
    for lag in range(cr.n_lags):
        cr.needed[lag] = 0
    for j in range(m):
        if cr.smoothed[j] >= threshold:
            lo = j - 1 if j > 0 else 0
            hi = j + n_taps if j + n_taps < cr.n_lags else cr.n_lags - 1
            for lag in range(lo, hi + 1):
                n_needed += not cr.needed[lag]
                cr.needed[lag] = 1
    if 3 * n_needed > cr.n_lags:               # a flat correlation: compute it all exactly
        run_correlation(cr)
        return smoothed_peak(cr.c, cr.n_lags, taps, n_taps, cr.smoothed)
    # Runs of needed lags, each by the blocked double kernel.
    lag = 0
    while lag < cr.n_lags:
        if not cr.needed[lag]:
            lag += 1
            continue
        lo = lag
        while lag < cr.n_lags and cr.needed[lag]:
            lag += 1
        nmr_correlate_direct(cr.r, cr.u + lo, cr.n, lag - lo, cr.c + lo)
    # Exact smoothed values at the candidates: the first maximum among them is the maximum.
    for j in range(m):
        if cr.smoothed[j] >= threshold:
            value = smooth_at(cr.c, j, taps, n_taps)
            if best < 0 or value > top:
                best = j
                top = value
    if best == 0 or best == m - 1:
        return <double>best - (m - 1) // 2
    left = smooth_at(cr.c, best - 1, taps, n_taps)
    right = smooth_at(cr.c, best + 1, taps, n_taps)
    return refined_position(best, left, top, right) - (m - 1) // 2


cdef inline void apply_shift_line(const floating* x, Py_ssize_t n, double shift,
                                  double* out) noexcept nogil:
    """out[i] = x[i - shift], linear interpolation with circular wrap.

    NumPy equivalent: ``reference.apply_shift(x, shift)``; scipy:
    ``ndimage.shift(x, shift, order=1, mode="grid-wrap")``. out may not alias x.
    """
    cdef double whole = floor(shift)
    cdef double frac = shift - whole
    cdef double keep = 1.0 - frac
    cdef Py_ssize_t i, index, previous
    # (i - whole) mod n, with whole reduced first so that huge shifts cannot overflow.
    index = positive_mod(-<Py_ssize_t>fmod(whole, <double>n), n)
    for i in range(n):
        previous = index - 1 if index > 0 else n - 1
        out[i] = keep * x[index] + frac * x[previous]
        index += 1
        if index == n:
            index = 0


cdef inline void apply_shift_field_line(const floating* x, Py_ssize_t n, const double* field,
                                        double sign, double* out) noexcept nogil:
    """out[i] = x[i - sign * field[i]] (sign +-1), linear interpolation with circular wrap.

    NumPy equivalent: ``reference.apply_shift_field(x, sign * field)``. out may not alias x.
    """
    cdef Py_ssize_t i, lo, hi
    cdef double source, whole, frac
    for i in range(n):
        source = <double>i - sign * field[i]
        whole = floor(source)
        frac = source - whole
        if -n <= whole < 2 * n:              # the usual case: no division
            lo = wrap_index(<Py_ssize_t>whole, n)
        else:                                # reduced in double first: no overflow
            lo = positive_mod(<Py_ssize_t>fmod(whole, <double>n), n)
        hi = lo + 1 if lo + 1 < n else 0
        out[i] = (1.0 - frac) * x[lo] + frac * x[hi]


cdef inline void carry_mask_back(const uint8_t* mask, Py_ssize_t n, const double* field,
                                 double shift, uint8_t* out) noexcept nogil:
    """A mask of the aligned frame in a rung's own frame: out[i] = mask[(i - rint(d_i)) mod n]
    with d = field (per point) or, when field is NULL, the constant shift.

    NumPy equivalent: ``reference._shift_mask(mask, d)`` (np.rint: half to even, as C's
    nearbyint in the default rounding mode).
    """
    cdef Py_ssize_t i, offset
    cdef double rounded
    if field == NULL:                        # a rotation: two copies
        offset = positive_mod(<Py_ssize_t>fmod(nearbyint(shift), <double>n), n)
        memcpy(out, mask + n - offset, offset)
        memcpy(out + offset, mask, n - offset)
        return
    for i in range(n):
        rounded = nearbyint(field[i])
        if -n < rounded < n:
            out[i] = mask[wrap_index(i - <Py_ssize_t>rounded, n)]
        else:
            out[i] = mask[positive_mod(i - <Py_ssize_t>fmod(rounded, <double>n), n)]


# --------------------------------------------------------------------------- local alignment

cdef struct Candidate:
    double value
    Py_ssize_t position


cdef inline int stronger_first(const void* a, const void* b) noexcept nogil:
    # Descending value, then ascending position: np.argsort(-values, kind="stable").
    cdef const Candidate* x = <const Candidate*>a
    cdef const Candidate* y = <const Candidate*>b
    if x.value > y.value:
        return -1
    if x.value < y.value:
        return 1
    return -1 if x.position < y.position else (1 if x.position > y.position else 0)


cdef inline int ascending_position(const void* a, const void* b) noexcept nogil:
    cdef Py_ssize_t x = (<const Py_ssize_t*>a)[0], y = (<const Py_ssize_t*>b)[0]
    return -1 if x < y else (1 if x > y else 0)


cdef inline Py_ssize_t find_anchors(const double* r, Py_ssize_t n, Py_ssize_t n_anchors,
                                    Py_ssize_t window, double alpha, Candidate* candidates,
                                    Py_ssize_t* chosen, Selector* s) noexcept nogil:
    """Positions (ascending, in chosen) of up to n_anchors strong, separated peaks of r.

    NumPy equivalent: ``reference.find_anchors(r, n_anchors, window, alpha)``: local maxima
    >= median + alpha * mad_sigma, taken strongest first, at least `window` points apart and
    from either end. n_anchors <= 0 takes every such peak (as the reference's loop does).
    candidates and chosen hold n entries.
    """
    cdef double median = 0.0, unused = 0.0, sigma = 0.0, tau
    cdef Py_ssize_t i, k, count = 0, n_chosen = 0
    cdef bint separated
    if n < 3:
        return 0
    robust_stats_of(r, n, 0.0, WANT_MEDIAN | WANT_MAD, &median, &unused, &sigma, s)
    tau = median + alpha * sigma
    for i in range(1, n - 1):
        if r[i] > r[i - 1] and r[i] >= r[i + 1] and r[i] >= tau and window <= i < n - window:
            candidates[count].value = r[i]
            candidates[count].position = i
            count += 1
    qsort(candidates, count, sizeof(Candidate), stronger_first)
    for i in range(count):
        separated = True
        for k in range(n_chosen):
            if fabs(<double>(candidates[i].position - chosen[k])) < window:
                separated = False
                break
        if separated:
            chosen[n_chosen] = candidates[i].position
            n_chosen += 1
            if n_chosen == n_anchors:
                break
    qsort(chosen, n_chosen, sizeof(Py_ssize_t), ascending_position)
    return n_chosen


cdef inline void interpolate_field(const Py_ssize_t* positions, const double* shifts,
                                   Py_ssize_t count, Py_ssize_t n, double* out) noexcept nogil:
    """out = np.interp(np.arange(n), positions, shifts) (0 when count == 0), with NumPy's
    formula slope * (x - x_j) + y_j, constant beyond the end points."""
    cdef Py_ssize_t i, j = 0
    cdef double slope
    if count == 0:
        for i in range(n):
            out[i] = 0.0
        return
    for i in range(n):
        if i <= positions[0]:
            out[i] = shifts[0]
        elif i >= positions[count - 1]:
            out[i] = shifts[count - 1]
        else:
            while positions[j + 1] <= i:
                j += 1
            if positions[j] == i:
                out[i] = shifts[j]
            else:
                slope = (shifts[j + 1] - shifts[j]) / <double>(positions[j + 1] - positions[j])
                out[i] = slope * <double>(i - positions[j]) + shifts[j]


cdef struct LocalAligner:
    # Scratch of one thread for local_shift_field over lines of n points.
    Py_ssize_t n
    Candidate* candidates       # n
    Py_ssize_t* anchors         # n: anchor positions of the current reference
    Py_ssize_t n_anchor_found
    Py_ssize_t* positions       # n: anchors kept for the current line
    double* shifts              # n
    double* r_window            # 2 * window + 1
    double* u                   # window span + padded lags
    double* c                   # padded lags
    double* smoothed


cdef inline int local_aligner_init(LocalAligner* la, Py_ssize_t n, Py_ssize_t window,
                                   Py_ssize_t half_lags) noexcept nogil:
    cdef Py_ssize_t span = 2 * window + 1, padded = nmr_padded_lags(2 * half_lags + 1)
    la.n = n
    la.n_anchor_found = 0
    la.candidates = <Candidate*>malloc((n if n > 0 else 1) * sizeof(Candidate))
    la.anchors = <Py_ssize_t*>malloc((n if n > 0 else 1) * sizeof(Py_ssize_t))
    la.positions = <Py_ssize_t*>malloc((n if n > 0 else 1) * sizeof(Py_ssize_t))
    la.shifts = <double*>malloc((n if n > 0 else 1) * sizeof(double))
    la.r_window = <double*>malloc(span * sizeof(double))
    la.u = <double*>malloc((span + padded) * sizeof(double))
    la.c = <double*>malloc(padded * sizeof(double))
    la.smoothed = <double*>malloc(padded * sizeof(double))
    if (la.candidates == NULL or la.anchors == NULL or la.positions == NULL
            or la.shifts == NULL or la.r_window == NULL or la.u == NULL or la.c == NULL
            or la.smoothed == NULL):
        local_aligner_free(la)
        return -1
    return 0


cdef inline void local_aligner_free(LocalAligner* la) noexcept nogil:
    free(la.candidates)
    free(la.anchors)
    free(la.positions)
    free(la.shifts)
    free(la.r_window)
    free(la.u)
    free(la.c)
    free(la.smoothed)
    la.candidates = NULL
    la.anchors = NULL
    la.positions = NULL
    la.shifts = NULL
    la.r_window = NULL
    la.u = NULL
    la.c = NULL
    la.smoothed = NULL


cdef inline void local_shift_field_line(LocalAligner* la, const double* r, const floating* v,
                                        Py_ssize_t window, Py_ssize_t max_lag,
                                        const double* taps, Py_ssize_t n_taps,
                                        double* field) noexcept nogil:
    """Residual shift field of v against r from the anchors in la.anchors (find_anchors of r).

    NumPy equivalent: ``reference.local_shift_field(r, v, window, max_lag, n_anchors)``: per
    anchor, the windowed correlation (r centred on the window mean) over
    +-(max_lag + h), smoothed and refined; anchors whose shift reaches +-max_lag are dropped;
    np.interp between the rest.
    """
    cdef Py_ssize_t a, t, anchor, start, n = la.n, kept = 0
    cdef Py_ssize_t span = 2 * window + 1
    cdef Py_ssize_t half_lags = max_lag + n_taps // 2
    cdef Py_ssize_t n_lags = 2 * half_lags + 1
    cdef Py_ssize_t extent = span + nmr_padded_lags(n_lags) - 1
    cdef double mean, shift
    for a in range(la.n_anchor_found):
        anchor = la.anchors[a]
        mean = mean_of(r + anchor - window, span)
        for t in range(span):
            la.r_window[t] = r[anchor - window + t] - mean
        start = positive_mod(anchor - window - half_lags, n)
        for t in range(extent):
            la.u[t] = v[start]
            start += 1
            if start == n:
                start = 0
        nmr_correlate_direct(la.r_window, la.u, span, n_lags, la.c)
        shift = smoothed_peak(la.c, n_lags, taps, n_taps, la.smoothed)
        if fabs(shift) < max_lag:
            la.positions[kept] = anchor
            la.shifts[kept] = shift
            kept += 1
    interpolate_field(la.positions, la.shifts, kept, n, field)
