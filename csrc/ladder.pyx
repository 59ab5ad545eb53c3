"""The whole ladder chain of METHOD 2.1-2.4 and 3.1 for a batch of ladders [N, R, L], in one
call that releases the GIL once and runs the ladders in parallel (OpenMP, per-thread scratch).

Per ladder, as reference.preprocess_ladder: centre each rung on its median; align every rung
to the reference rung (global shift, optional local shift field); peak/baseline masks from
the provisionally scaled, smoothed rungs; least-squares scales on the peak mask; robust noise
on the baseline mask carried back to each rung's frame; SNR, T_hat, fusion weights and the
fused s_hat; with reference "fused", a second pass against s_hat.

Arithmetic is float64 inside, the input float32 and validated beforehand (checks.pyx: no
NaN/Inf, no constant rung, no zero MAD). Conditions the reference raises on inside the chain
come back as a status per ladder (STATUS_* below), with the rung and value it names; the
dispatch layer turns them into the reference's InputError messages.
"""

import numpy as np

from cython.parallel cimport prange, threadid
from libc.math cimport NAN, isnan
from libc.stdint cimport uint8_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from _align cimport (
    Correlator,
    LocalAligner,
    apply_shift_field_line,
    apply_shift_line,
    carry_mask_back,
    correlator_free,
    correlator_init,
    estimate_shift_with,
    find_anchors,
    local_aligner_free,
    local_aligner_init,
    local_shift_field_line,
    set_reference,
)
from _common cimport any_true, resolve_threads
from _masks cimport candidate_peaks, dilate_components_line, dilate_line
from _noise cimport robust_scale_of
from _rescale cimport FUSION_OK, fuse_rows, fusion_weights_into, scale_masked
from _robust cimport (
    WANT_PERCENTILE,
    Selector,
    gather_masked,
    mad_sigma_detrended_of,
    median_of,
    robust_stats_of,
    selector_free,
    selector_init,
)

cdef enum:
    CHAIN_OK = 0
    CHAIN_NO_PEAK = 1               # no peak above the threshold
    CHAIN_NO_BASELINE = 2           # the peak mask covers the whole spectrum
    CHAIN_BAD_SCALE = 3             # a scale is not > 0 (rung, value)
    CHAIN_ZERO_SIGMA = 4            # a noise sigma is <= 0 (rung)
    CHAIN_FUSION = 5                # fusion_weights raises (snr, t_hat of that pass returned)
    CHAIN_BAD_PERCENTILE = 6        # snr_percentile outside [0, 100]
    CHAIN_DEFER = 7                 # a degenerate case (zero or NaN noise estimate) that the
                                    # reference decides: the dispatch layer runs it there

STATUS_OK = CHAIN_OK
STATUS_NO_PEAK = CHAIN_NO_PEAK
STATUS_NO_BASELINE = CHAIN_NO_BASELINE
STATUS_BAD_SCALE = CHAIN_BAD_SCALE
STATUS_ZERO_SIGMA = CHAIN_ZERO_SIGMA
STATUS_FUSION = CHAIN_FUSION
STATUS_BAD_PERCENTILE = CHAIN_BAD_PERCENTILE
STATUS_DEFER = CHAIN_DEFER

# Constants of the reference chain: find_anchors' threshold inside local_shift_field, and
# robust_scale's defaults for the first noise estimate of each rung.
cdef double ANCHOR_ALPHA = 8.0
cdef double FIRST_NOISE_ALPHA = 5.0
cdef Py_ssize_t FIRST_NOISE_RADIUS = 8


cdef struct ChainOptions:
    Py_ssize_t rungs
    Py_ssize_t length
    bint fused
    bint local
    int scale_method
    Py_ssize_t max_lag
    Py_ssize_t local_window
    Py_ssize_t local_max_lag
    Py_ssize_t n_anchors
    Py_ssize_t dilate_radius
    double dilate_relative
    Py_ssize_t erode_radius
    Py_ssize_t trend_radius
    double alpha
    int weights_method
    double gamma
    bint has_cap
    double cap
    double percentile
    bint percentile_valid
    int correlate_method
    const double* savgol_taps       # every smoothing window's taps, back to back
    const Py_ssize_t* tap_counts
    Py_ssize_t n_windows
    Py_ssize_t widest
    const double* shift_taps
    Py_ssize_t n_shift_taps


cdef struct Workspace:
    # Scratch of one thread: every buffer the chain needs for one ladder.
    Selector selector
    Correlator correlator
    LocalAligner local
    double* centred         # [R, L] rungs minus their medians
    double* aligned         # [R, L] aligned, then re-scaled in place
    double* fields          # [R, L] total shift per point (local alignment only)
    double* s_hat           # [L]
    double* reference       # [L] the pass-2 reference (s_hat of pass 1)
    double* line            # [L]
    double* envelope        # [L]
    double* padded          # [L + widest window]
    uint8_t* mask_bytes     # one block for the byte masks below
    uint8_t* peak           # [L]
    uint8_t* base           # [L]
    uint8_t* carried        # [L]
    uint8_t* mask_scratch   # [L]
    uint8_t* dilate_pad     # [3 L + 256] dilate_line's scratch
    Py_ssize_t* cover       # [L + 1] dilate_components' difference array
    double* per_rung        # 10 arrays of [R] below
    double* first_noise
    double* scales
    double* raw_sigma
    double* sigma
    double* snr
    double* weights
    double* shifts
    double* ratios
    double* levels
    double* tops
    uint8_t* capped         # [R]


cdef struct Outputs:
    # Base pointers of the result arrays; ladder n writes at offset n * (its size).
    float* aligned
    double* shifts
    double* scales
    double* sigma
    double* snr
    double* weights
    double* t_hat
    uint8_t* peak
    uint8_t* base
    float* s_hat
    float* fields           # NULL unless asked for (and local alignment ran)
    int* status_rung
    double* status_value


cdef int workspace_init(Workspace* ws, const ChainOptions* o) noexcept nogil:
    """Allocate one thread's scratch (ws zeroed beforehand); -1 if out of memory."""
    cdef Py_ssize_t R = o.rungs, L = o.length
    if selector_init(&ws.selector, L if L > R else R) != 0:
        return -1
    if correlator_init(&ws.correlator, L, o.max_lag + o.n_shift_taps // 2,
                       o.correlate_method) != 0:
        return -1
    if o.local and local_aligner_init(&ws.local, L, o.local_window,
                                      o.local_max_lag + o.n_shift_taps // 2) != 0:
        return -1
    ws.centred = <double*>malloc(R * L * sizeof(double))
    ws.aligned = <double*>malloc(R * L * sizeof(double))
    ws.fields = <double*>malloc(R * L * sizeof(double)) if o.local else NULL
    ws.s_hat = <double*>malloc(L * sizeof(double))
    ws.reference = <double*>malloc(L * sizeof(double))
    ws.line = <double*>malloc(L * sizeof(double))
    ws.envelope = <double*>malloc(L * sizeof(double))
    ws.padded = <double*>malloc((L + o.widest) * sizeof(double))
    ws.mask_bytes = <uint8_t*>malloc(4 * L + 3 * L + 256)
    ws.cover = <Py_ssize_t*>malloc((L + 1) * sizeof(Py_ssize_t))
    ws.per_rung = <double*>malloc(10 * R * sizeof(double))
    ws.capped = <uint8_t*>malloc(R)
    if (ws.centred == NULL or ws.aligned == NULL or (o.local and ws.fields == NULL)
            or ws.s_hat == NULL or ws.reference == NULL or ws.line == NULL
            or ws.envelope == NULL or ws.padded == NULL or ws.mask_bytes == NULL
            or ws.cover == NULL or ws.per_rung == NULL or ws.capped == NULL):
        return -1
    ws.peak = ws.mask_bytes
    ws.base = ws.mask_bytes + L
    ws.carried = ws.mask_bytes + 2 * L
    ws.mask_scratch = ws.mask_bytes + 3 * L
    ws.dilate_pad = ws.mask_bytes + 4 * L
    ws.scales = ws.per_rung
    ws.raw_sigma = ws.per_rung + 1 * R
    ws.sigma = ws.per_rung + 2 * R
    ws.snr = ws.per_rung + 3 * R
    ws.weights = ws.per_rung + 4 * R
    ws.shifts = ws.per_rung + 5 * R
    ws.ratios = ws.per_rung + 6 * R
    ws.levels = ws.per_rung + 7 * R
    ws.tops = ws.per_rung + 8 * R
    ws.first_noise = ws.per_rung + 9 * R
    return 0


cdef void workspace_free(Workspace* ws) noexcept nogil:
    selector_free(&ws.selector)
    correlator_free(&ws.correlator)
    local_aligner_free(&ws.local)
    free(ws.centred)
    free(ws.aligned)
    free(ws.fields)
    free(ws.s_hat)
    free(ws.reference)
    free(ws.line)
    free(ws.envelope)
    free(ws.padded)
    free(ws.mask_bytes)
    free(ws.cover)
    free(ws.per_rung)
    free(ws.capped)


cdef void align_rungs(Workspace* ws, const double* ref, bint skip_top,
                      const ChainOptions* o) noexcept nogil:
    """Shifts, shift fields and aligned rungs against ref (reference._align)."""
    cdef Py_ssize_t k, i, R = o.rungs, L = o.length
    cdef double shift
    cdef double* centred
    cdef double* aligned
    cdef double* field
    set_reference(&ws.correlator, ref)
    if o.local:
        ws.local.n_anchor_found = find_anchors(ref, L, o.n_anchors, o.local_window,
                                               ANCHOR_ALPHA, ws.local.candidates,
                                               ws.local.anchors, &ws.selector)
    for k in range(R):
        centred = ws.centred + k * L
        aligned = ws.aligned + k * L
        if skip_top and k == R - 1:
            ws.shifts[k] = 0.0
            memcpy(aligned, centred, L * sizeof(double))
            if o.local:
                memset(ws.fields + k * L, 0, L * sizeof(double))
            continue
        shift = estimate_shift_with(&ws.correlator, centred, o.shift_taps, o.n_shift_taps)
        ws.shifts[k] = shift
        apply_shift_line(centred, L, -shift, aligned)
        if o.local:
            field = ws.fields + k * L
            local_shift_field_line(&ws.local, ref, aligned, o.local_window, o.local_max_lag,
                                   o.shift_taps, o.n_shift_taps, field)
            for i in range(L):
                field[i] = shift + field[i]
            apply_shift_field_line(centred, L, field, -1.0, aligned)   # aligned[i] = x[i + d_i]


cdef int first_noise(Workspace* ws, const double* offsets, const double* middles,
                     const ChainOptions* o) noexcept nogil:
    """robust_scale sigma of every centred rung (it does not depend on the alignment)."""
    cdef Py_ssize_t k, L = o.length
    cdef double center
    for k in range(o.rungs):
        # Centring is monotone: the centred median is made of the centred middle values.
        center = ((middles[2 * k] - offsets[k]) + (middles[2 * k + 1] - offsets[k])) / 2.0
        robust_scale_of(ws.centred + k * L, L, FIRST_NOISE_ALPHA, FIRST_NOISE_RADIUS,
                        o.trend_radius, ws.mask_scratch, ws.carried, ws.dilate_pad,
                        &ws.selector, &center, &ws.first_noise[k], False, True)
        if not ws.first_noise[k] > 0:     # z-scores would be inf/NaN
            return CHAIN_DEFER
    return CHAIN_OK


cdef int masks_scales_noise(Workspace* ws, const double* ref, Py_ssize_t ref_rung,
                            const ChainOptions* o, int* rung, double* value) noexcept nogil:
    """Masks M and B, LS scales and per-rung noise against ref (reference._masks_scales_noise)."""
    cdef Py_ssize_t k, i, R = o.rungs, L = o.length
    cdef double noise_ref, noise_x
    # M from the pointwise maximum of the smoothed rungs in units of their own noise.
    candidate_peaks(ws.aligned, R, L, o.savgol_taps, o.tap_counts, o.n_windows,
                    ws.first_noise, o.alpha, ws.padded, ws.line, ws.envelope, ws.carried,
                    ws.mask_scratch, &ws.selector)
    dilate_components_line(ws.mask_scratch, L, o.dilate_radius, o.dilate_relative, ws.cover,
                           ws.peak)
    dilate_line(ws.peak, L, o.erode_radius, False, ws.dilate_pad, ws.mask_scratch)
    for i in range(L):
        ws.base[i] = not ws.mask_scratch[i]
    if not any_true(ws.peak, L):
        return CHAIN_NO_PEAK
    if not any_true(ws.base, L):
        return CHAIN_NO_BASELINE

    # Noise of each rung as acquired (interpolation smooths it), on B carried back to the
    # rung's own frame.
    for k in range(R):
        carry_mask_back(ws.base, L, ws.fields + k * L if o.local else NULL, ws.shifts[k],
                        ws.carried)
        ws.raw_sigma[k] = mad_sigma_detrended_of(ws.centred + k * L, ws.carried, L,
                                                 o.trend_radius, &ws.selector)
    # The Deming fit needs the noise of the aligned copies, which interpolation smoothed. The
    # top rung as reference is not shifted: its noise is that of its own frame, just computed.
    if ref_rung >= 0:
        noise_ref = ws.raw_sigma[ref_rung]
    else:
        noise_ref = mad_sigma_detrended_of(ref, ws.base, L, o.trend_radius, &ws.selector)
    for k in range(R):
        if k == ref_rung:
            ws.scales[k] = 1.0
            continue
        noise_x = mad_sigma_detrended_of(ws.aligned + k * L, ws.base, L, o.trend_radius,
                                         &ws.selector)
        ws.scales[k] = scale_masked(ref, ws.aligned + k * L, ws.peak, L, o.scale_method,
                                    noise_ref, noise_x)
    for k in range(R):
        if not ws.scales[k] > 0:
            rung[0] = <int>k
            value[0] = ws.scales[k]
            return CHAIN_BAD_SCALE
    for k in range(R):
        if isnan(ws.raw_sigma[k]):       # B carried back to rung k is empty
            return CHAIN_DEFER
        ws.sigma[k] = ws.scales[k] * ws.raw_sigma[k]
    return CHAIN_OK


cdef int snr_weights_fusion(Workspace* ws, const ChainOptions* o, int* rung) noexcept nogil:
    """Re-scale, SNR, T_hat, fusion weights and s_hat of one pass (end of reference's loop)."""
    cdef Py_ssize_t k, i, count, R = o.rungs, L = o.length, lowest = 0
    cdef double scale, unused = 0.0, unused2 = 0.0
    cdef double* rescaled
    cdef bint any_zero = False
    for k in range(R):
        rescaled = ws.aligned + k * L
        scale = ws.scales[k]
        for i in range(L):
            rescaled[i] = scale * rescaled[i]
    for k in range(R):
        any_zero = any_zero or ws.sigma[k] <= 0
        # np.argmin: the first NaN if any, else the first minimum
        if not isnan(ws.sigma[lowest]) and (isnan(ws.sigma[k]) or ws.sigma[k] < ws.sigma[lowest]):
            lowest = k
    if any_zero:
        rung[0] = <int>lowest
        return CHAIN_ZERO_SIGMA
    for k in range(R):
        count = gather_masked(ws.aligned + k * L, ws.base, L, ws.selector.gathered)
        ws.levels[k] = median_of(ws.selector.gathered, count, &ws.selector)
    if not o.percentile_valid:
        return CHAIN_BAD_PERCENTILE
    for k in range(R):
        count = gather_masked(ws.aligned + k * L, ws.peak, L, ws.selector.gathered)
        robust_stats_of(ws.selector.gathered, count, o.percentile, WANT_PERCENTILE, &unused,
                        &ws.tops[k], &unused2, &ws.selector)
        ws.snr[k] = (ws.tops[k] - ws.levels[k]) / ws.sigma[k]
    for k in range(R - 1):
        ws.ratios[k] = ws.sigma[k] / ws.sigma[k + 1]
    ws.levels[0] = median_of(ws.ratios, R - 1, &ws.selector)     # T_hat, kept in levels[0]
    if fusion_weights_into(ws.snr, R, ws.levels[0], o.weights_method, o.gamma, o.has_cap,
                           o.cap, ws.weights, ws.capped) != FUSION_OK:
        return CHAIN_FUSION
    fuse_rows(ws.aligned, ws.weights, R, L, ws.s_hat)
    return CHAIN_OK


cdef int run_ladder(Workspace* ws, const float* x, const double* offsets,
                    const double* middles, Py_ssize_t n, const ChainOptions* o,
                    Outputs* out) noexcept nogil:
    """reference.preprocess_ladder on ladder n: results into out, or a status."""
    cdef Py_ssize_t k, i, R = o.rungs, L = o.length, ref_rung = o.rungs - 1
    cdef int status, rung = 0, pass_index
    cdef double value = NAN
    cdef const double* ref
    for k in range(R):
        for i in range(L):
            ws.centred[k * L + i] = x[k * L + i] - offsets[k]
    ref = ws.centred + (R - 1) * L
    align_rungs(ws, ref, True, o)
    status = first_noise(ws, offsets, middles, o)
    if status != CHAIN_OK:
        return status
    for pass_index in range(2 if o.fused else 1):
        if pass_index == 1:
            memcpy(ws.reference, ws.s_hat, L * sizeof(double))
            ref = ws.reference
            ref_rung = -1
            align_rungs(ws, ref, False, o)
        status = masks_scales_noise(ws, ref, ref_rung, o, &rung, &value)
        if status == CHAIN_OK:
            status = snr_weights_fusion(ws, o, &rung)
        if status != CHAIN_OK:
            out.status_rung[n] = rung
            out.status_value[n] = value
            if status == CHAIN_FUSION:
                memcpy(out.snr + n * R, ws.snr, R * sizeof(double))
                out.t_hat[n] = ws.levels[0]
            return status

    for i in range(R * L):
        out.aligned[n * R * L + i] = <float>ws.aligned[i]
    for i in range(L):
        out.s_hat[n * L + i] = <float>ws.s_hat[i]
    memcpy(out.peak + n * L, ws.peak, L)
    memcpy(out.base + n * L, ws.base, L)
    memcpy(out.shifts + n * R, ws.shifts, R * sizeof(double))
    memcpy(out.scales + n * R, ws.scales, R * sizeof(double))
    memcpy(out.sigma + n * R, ws.sigma, R * sizeof(double))
    memcpy(out.snr + n * R, ws.snr, R * sizeof(double))
    memcpy(out.weights + n * R, ws.weights, R * sizeof(double))
    out.t_hat[n] = ws.levels[0]
    if out.fields != NULL and o.local:
        for i in range(R * L):
            out.fields[n * R * L + i] = <float>ws.fields[i]
    return CHAIN_OK


cdef class WorkspaceSet:
    """One Workspace per thread for one configuration of the chain (sizes, options)."""
    cdef Workspace* items
    cdef int count

    def __cinit__(self, int count):
        self.items = <Workspace*>calloc(count, sizeof(Workspace))
        if self.items == NULL:
            raise MemoryError()
        self.count = count

    def __dealloc__(self):
        cdef int t
        if self.items != NULL:
            for t in range(self.count):
                workspace_free(&self.items[t])
            free(self.items)


# Scratch kept between calls, by configuration: a ladder touches megabytes of scratch, and
# fresh pages cost more than the chain's own arithmetic. Taken out while in use, so
# concurrent callers never share one; the last few configurations are kept.
_kept_workspaces = {}
KEEP_CONFIGURATIONS = 2
KEEP_POINTS = 1 << 23       # R * L above this is not kept (its scratch would be ~0.5 GB)


def preprocess_batch(const float[:, :, ::1] x, const double[:, ::1] offsets,
                     const double[:, :, ::1] middles, *,
                     bint fused, bint local, Py_ssize_t max_lag, Py_ssize_t local_window,
                     Py_ssize_t local_max_lag, Py_ssize_t n_anchors, double alpha,
                     Py_ssize_t dilate_radius, double dilate_relative, Py_ssize_t erode_radius,
                     Py_ssize_t trend_radius,
                     const double[::1] savgol_taps, const Py_ssize_t[::1] tap_counts,
                     int weights_method, double gamma,
                     bint has_cap, double cap, int scale_method, double percentile,
                     const double[::1] shift_taps, bint want_fields=False,
                     int correlate_method=0, int threads=0):
    """reference.preprocess_ladders on x [N, R, L] (float32, validated; offsets and middles:
    the rung medians and their middle values from checks.check_ladders), every ladder in
    parallel, the GIL released once.

    Returns a dict of the LadderBatchResult arrays (aligned and s_hat float32, masks uint8,
    shift_fields float32 [N, R, L] when want_fields and local) and the per-ladder
    status [N] int32, status_rung [N] int32, status_value [N] float64 (STATUS_*).
    """
    cdef Py_ssize_t N = x.shape[0], R = x.shape[1], L = x.shape[2], n
    cdef int n_threads = resolve_threads(threads, N), t
    cdef ChainOptions o
    cdef Outputs out
    cdef WorkspaceSet workspaces
    cdef Workspace* items
    result = {
        "aligned": np.zeros((N, R, L), dtype=np.float32),
        "shifts": np.zeros((N, R)),
        "scales": np.zeros((N, R)),
        "sigma": np.zeros((N, R)),
        "snr": np.zeros((N, R)),
        "weights": np.zeros((N, R)),
        "t_hat": np.zeros(N),
        "peak_mask": np.zeros((N, L), dtype=np.uint8),
        "base_mask": np.zeros((N, L), dtype=np.uint8),
        "s_hat": np.zeros((N, L), dtype=np.float32),
        "shift_fields": np.zeros((N, R, L), dtype=np.float32) if (want_fields and local) else None,
        "status": np.zeros(N, dtype=np.int32),
        "status_rung": np.zeros(N, dtype=np.int32),
        "status_value": np.full(N, np.nan),
    }
    if N == 0:
        return result
    if R < 2 or L < 1 or tap_counts.shape[0] < 1 or shift_taps.shape[0] < 1:
        raise ValueError("preprocess_batch: needs R >= 2 rungs of L >= 1 points and taps")
    cdef float[:, :, ::1] aligned_view = result["aligned"]
    cdef double[:, ::1] shifts_view = result["shifts"]
    cdef double[:, ::1] scales_view = result["scales"]
    cdef double[:, ::1] sigma_view = result["sigma"]
    cdef double[:, ::1] snr_view = result["snr"]
    cdef double[:, ::1] weights_view = result["weights"]
    cdef double[::1] t_hat_view = result["t_hat"]
    cdef uint8_t[:, ::1] peak_view = result["peak_mask"]
    cdef uint8_t[:, ::1] base_view = result["base_mask"]
    cdef float[:, ::1] s_hat_view = result["s_hat"]
    cdef float[:, :, ::1] fields_view = result["shift_fields"]
    cdef int[::1] status_view = result["status"]
    cdef int[::1] rung_view = result["status_rung"]
    cdef double[::1] value_view = result["status_value"]

    o.rungs = R
    o.length = L
    o.fused = fused
    o.local = local
    o.scale_method = scale_method
    o.max_lag = max_lag
    o.local_window = local_window
    o.local_max_lag = local_max_lag
    o.n_anchors = n_anchors
    o.dilate_radius = dilate_radius
    o.dilate_relative = dilate_relative
    o.erode_radius = erode_radius
    o.trend_radius = trend_radius
    o.alpha = alpha
    o.weights_method = weights_method
    o.gamma = gamma
    o.has_cap = has_cap
    o.cap = cap
    o.percentile = percentile
    o.percentile_valid = 0.0 <= percentile <= 100.0
    o.correlate_method = correlate_method
    o.savgol_taps = &savgol_taps[0]
    o.tap_counts = &tap_counts[0]
    o.n_windows = tap_counts.shape[0]
    o.widest = 1
    for t in range(o.n_windows):
        o.widest = tap_counts[t] if tap_counts[t] > o.widest else o.widest
    o.shift_taps = &shift_taps[0]
    o.n_shift_taps = shift_taps.shape[0]

    out.aligned = &aligned_view[0, 0, 0]
    out.shifts = &shifts_view[0, 0]
    out.scales = &scales_view[0, 0]
    out.sigma = &sigma_view[0, 0]
    out.snr = &snr_view[0, 0]
    out.weights = &weights_view[0, 0]
    out.t_hat = &t_hat_view[0]
    out.peak = &peak_view[0, 0]
    out.base = &base_view[0, 0]
    out.s_hat = &s_hat_view[0, 0]
    out.fields = &fields_view[0, 0, 0] if fields_view is not None else NULL
    out.status_rung = &rung_view[0]
    out.status_value = &value_view[0]

    configuration = (R, L, n_threads, local, local_window, local_max_lag, max_lag,
                     o.n_shift_taps, o.widest, correlate_method)
    workspaces = _kept_workspaces.pop(configuration, None)
    if workspaces is None:
        workspaces = WorkspaceSet(n_threads)
        for t in range(n_threads):
            if workspace_init(&workspaces.items[t], &o) != 0:
                raise MemoryError()
    items = workspaces.items
    for n in prange(N, nogil=True, num_threads=n_threads, schedule="dynamic"):
        status_view[n] = run_ladder(&items[threadid()], &x[0, 0, 0] + n * R * L,
                                    &offsets[n, 0], &middles[n, 0, 0], n, &o, &out)
    if R * L <= KEEP_POINTS:
        _kept_workspaces[configuration] = workspaces
    while len(_kept_workspaces) > KEEP_CONFIGURATIONS:
        del _kept_workspaces[next(iter(_kept_workspaces))]
    return result
