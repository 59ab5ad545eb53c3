"""NumPy reference of the preprocessing chain (METHOD 2.1-2.4 and 3.1).

Readable and exact: every compiled kernel in csrc/ is checked against the function of the
same name here, and these functions are checked against SciPy where SciPy has the operation.
Arithmetic is float64 inside; arrays come back float32 (masks bool).

Units: shifts and radii in points of the spectrum's grid; amplitudes in the units of the
input (after centring); sigma is the standard deviation of the noise in those units; SNRs
follow METHOD 2.4 (``(P95(x_M) - median(x_B)) / sigma``), which is the robust, mask-based
cousin of nmrladder's stated convention (:data:`~nmrladder.runtime.conventions.SNR_CONVENTION`).
Shift signs follow :data:`~nmrladder.runtime.conventions.SHIFT_CONVENTION`.

"MAD" thresholds use the sigma-consistent MAD: ``mad_sigma = 1.4826 * median(|x - median(x)|)``,
so ``alpha`` counts noise standard deviations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
from scipy.signal import savgol_coeffs

from nmrladder.runtime.conventions import MAD_TO_SIGMA
from nmrladder.runtime.errors import InputError

# --------------------------------------------------------------------------- robust statistics


def _select(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    values = np.asarray(x, dtype=np.float64)
    if mask is not None:
        values = values[np.asarray(mask, dtype=bool)]
    return values


def median(x: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Median of ``x`` (over ``mask`` where given); NaN for an empty selection.

    NumPy equivalent: ``np.median(x[mask])``.
    """
    values = _select(x, mask)
    return float(np.median(values)) if values.size else float("nan")


def percentile(x: np.ndarray, q: float, mask: np.ndarray | None = None) -> float:
    """The q-th percentile with linear interpolation between order statistics.

    NumPy equivalent: ``np.percentile(x[mask], q)`` (method ``"linear"``).
    """
    values = _select(x, mask)
    return float(np.percentile(values, q)) if values.size else float("nan")


def median_and_percentile(
    x: np.ndarray, q: float = 95.0, mask: np.ndarray | None = None
) -> tuple[float, float]:
    """Median and q-th percentile together (one selection pass in the kernel)."""
    return median(x, mask), percentile(x, q, mask)


def mad_sigma(x: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust noise standard deviation ``1.4826 * median(|x - median(x)|)`` (over ``mask``).

    SciPy equivalent: ``scipy.stats.median_abs_deviation(x[mask], scale="normal")``
    up to the constant (SciPy uses 1/Phi^-1(3/4) = 1.482602...; nmrladder uses 1.4826).
    """
    values = _select(x, mask)
    if values.size == 0:
        return float("nan")
    return MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))


def mad_sigma_batch(spectra: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """:func:`mad_sigma` of every row of ``spectra`` [N, L] (over the row of ``masks``)."""
    spectra = np.atleast_2d(spectra)
    rows = range(spectra.shape[0])
    if masks is None:
        return np.array([mad_sigma(spectra[i]) for i in rows])
    masks = np.broadcast_to(masks, spectra.shape)
    return np.array([mad_sigma(spectra[i], masks[i]) for i in rows])


def mad_sigma_detrended(x: np.ndarray, mask: np.ndarray, radius: int = 64) -> float:
    """:func:`mad_sigma` of ``x`` over ``mask`` after removing a slow baseline trend.

    The trend at point i is the mean of the masked values in ``[i - radius, i + radius]``;
    the MAD is taken of ``x - trend`` on the masked points. Real baselines are rarely flat
    (a distortion of 1 % of the tallest peak is as large as the noise of a clean spectrum),
    and a MAD of the raw values would read the distortion as noise. Subtracting a local mean
    of ~2 radius points removes a fraction ~1/(2 radius) of the noise variance (under 1 % in
    sigma at the default radius for white noise, ~2 % for zero-filled data).
    """
    values = np.asarray(x, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return float("nan")
    length = values.size
    hi = np.minimum(np.arange(length) + radius + 1, length)
    lo = np.maximum(np.arange(length) - radius, 0)
    sums = np.concatenate([[0.0], np.cumsum(np.where(m, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(m)])
    trend = (sums[hi] - sums[lo])[m] / (counts[hi] - counts[lo])[m]
    return mad_sigma(values[m] - trend)


def robust_scale(
    x: np.ndarray, alpha: float = 5.0, dilate_radius: int = 8, trend_radius: int = 64
) -> tuple[float, float]:
    """Baseline level and noise sigma of one spectrum without a ladder (inference scaling).

    Two passes: median and MAD sigma over all points; then, over the points left when
    everything further than ``alpha`` sigma from the median, dilated by ``dilate_radius``, is
    masked out as signal, the median and :func:`mad_sigma_detrended`. Returns
    ``(center, sigma)`` in the units of ``x``.
    """
    values = np.asarray(x, dtype=np.float64)
    center, sigma = median(values), mad_sigma(values)
    signal = dilate(np.abs(values - center) > alpha * sigma, dilate_radius)
    baseline = ~signal
    if baseline.sum() >= max(16, values.size // 10):
        center, sigma = (
            median(values, baseline),
            mad_sigma_detrended(values, baseline, trend_radius),
        )
    return center, sigma


def robust_scale_batch(
    spectra: np.ndarray, alpha: float = 5.0, dilate_radius: int = 8, trend_radius: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`robust_scale` of every row of ``spectra`` [N, L]: ``(centers [N], sigmas [N])``."""
    pairs = [
        robust_scale(row, alpha, dilate_radius, trend_radius) for row in np.atleast_2d(spectra)
    ]
    centers, sigmas = zip(*pairs, strict=True) if pairs else ((), ())
    return np.array(centers, dtype=np.float64), np.array(sigmas, dtype=np.float64)


def standardise(
    spectra: np.ndarray, centers: np.ndarray, sigmas: np.ndarray, padded: int
) -> np.ndarray:
    """``(spectra - centers) / sigmas`` per row in float64, as float32 [N, padded], zero
    padding to the right: the network's input (runtime/scaling.py)."""
    x = np.atleast_2d(spectra)
    z = np.zeros((x.shape[0], padded), dtype=np.float32)
    z[:, : x.shape[1]] = (x - np.asarray(centers)[:, None]) / np.asarray(sigmas)[:, None]
    return z


# --------------------------------------------------------------------------- masks (METHOD 2.3)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by ``radius`` points along the last axis; outside the array is False.

    SciPy equivalent: ``scipy.ndimage.binary_dilation(mask, structure=np.ones(2*radius+1))``
    per row (its default border_value=0).
    """
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return mask.copy()
    length = mask.shape[-1]
    # Sliding count of True values in the window [i - r, i + r], from a cumulative sum.
    padded = np.concatenate(
        [np.zeros(mask.shape[:-1] + (1,), np.int64), np.cumsum(mask, axis=-1)], axis=-1
    )
    hi = np.minimum(np.arange(length) + radius + 1, length)
    lo = np.maximum(np.arange(length) - radius, 0)
    return (padded[..., hi] - padded[..., lo]) > 0


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by ``radius`` points, the border counting as True: ``~dilate(~mask)``.

    SciPy equivalent: ``scipy.ndimage.binary_erosion(mask, np.ones(2*radius+1), border_value=1)``.
    """
    return ~dilate(~np.asarray(mask, dtype=bool), radius)


def dilate_components(mask: np.ndarray, radius: int, relative: float = 0.0) -> np.ndarray:
    """Grow every run of True values of a 1D mask by ``max(radius, ceil(relative * run length))``.

    With ``relative = 0`` this is :func:`dilate`. A run's length measures its line's width at
    the threshold, so broad lines (low field, wide linewidths) get proportionally wider skirts:
    a Lorentzian holds ~14 % of its area beyond the points where it falls to 5 % of its height.
    """
    mask = np.asarray(mask, dtype=bool)
    length = mask.size
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8))).reshape(-1, 2)
    grown = np.zeros(length + 1, dtype=np.int64)  # difference array of the covered intervals
    for start, stop in edges:
        reach = max(radius, int(np.ceil(relative * (stop - start))))
        grown[max(start - reach, 0)] += 1
        grown[min(stop + reach, length)] -= 1
    return np.cumsum(grown[:length]) > 0


def smooth(x: np.ndarray, window: int, polyorder: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing along the last axis, edges extended with the nearest value.

    SciPy equivalent: ``scipy.signal.savgol_filter(x, window, polyorder, mode="nearest")``.
    """
    x = np.asarray(x, dtype=np.float64)
    if window <= 1:
        return x.copy()
    half = window // 2
    coeffs = savgol_coeffs(window, polyorder)
    pad = [(0, 0)] * (x.ndim - 1) + [(half, half)]
    padded = np.pad(x, pad, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=-1)
    return windows @ coeffs[::-1]


def threshold_mask(spectra: np.ndarray, alpha: float) -> np.ndarray:
    """Candidate peak points: ``max_k x_k >= median + alpha * mad_sigma`` of that maximum.

    ``spectra`` is [R, L] (pointwise max over rungs) or [L].
    """
    peak_envelope = np.max(np.atleast_2d(np.asarray(spectra, dtype=np.float64)), axis=0)
    tau = median(peak_envelope) + alpha * mad_sigma(peak_envelope)
    return peak_envelope >= tau


def peak_and_baseline_masks(
    spectra: np.ndarray,
    noise: np.ndarray,
    alpha: float = 4.0,
    dilate_radius: int = 4,
    dilate_relative: float = 1.5,
    erode_radius: int = 2,
    smooth_windows: tuple[int, ...] = (9,),
    smooth_polyorder: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Peak mask M and baseline mask B of METHOD 2.3 from aligned rungs [R, L].

    The pointwise maximum is taken over the smoothed rungs each divided by its own noise
    ``noise`` [R] (z-scores): the rungs' amplitudes then need no re-scaling first, and the
    noisiest rung does not set the threshold (a plain maximum is dominated by rung 0's noise).
    M = dilate_components(threshold_mask(smooth(spectra) / noise, alpha), dilate_radius,
    dilate_relative); B = erode(~M, erode_radius) = ~dilate(M, erode_radius).
    """
    noise = np.asarray(noise, dtype=np.float64).reshape(-1, 1)
    candidates = np.zeros(np.shape(spectra)[-1], dtype=bool)
    for window in smooth_windows:
        zscores = smooth(spectra, window, smooth_polyorder) / noise
        candidates |= threshold_mask(zscores, alpha)
    peak_mask = dilate_components(candidates, dilate_radius, dilate_relative)
    return peak_mask, erode(~peak_mask, erode_radius)


# --------------------------------------------------------------------------- alignment (METHOD 2.1)


def cross_correlation(ref: np.ndarray, x: np.ndarray, max_lag: int) -> np.ndarray:
    """Circular cross-correlation at lags -max_lag..max_lag: ``c[j] = sum_i r_i x_{(i+lag) mod L}``.

    Both inputs are centred on their mean first (the argmax of a circular correlation does not
    depend on offsets; centring keeps sums well conditioned). ``c`` has 2*max_lag+1 values and
    peaks at lag d when ``x[i] = ref[i - d]``.
    """
    r = np.asarray(ref, dtype=np.float64)
    v = np.asarray(x, dtype=np.float64)
    r = r - r.mean()
    v = v - v.mean()
    lags = np.arange(-max_lag, max_lag + 1)
    return np.array([np.dot(r, np.roll(v, -lag)) for lag in lags])


#: Width (in lags) of the Gaussian that smooths a correlation before its peak is interpolated.
#: Smoothing turns the narrow correlation peak of sharp lines into a near-Gaussian one, for which
#: interpolating the logarithm of three points is almost unbiased (about 0.002 point instead of
#: about 0.08 point for a plain parabola on 0.5-point-wide lines).
SHIFT_SMOOTH_SIGMA = 1.5


def gaussian_taps(sigma: float) -> np.ndarray:
    """Normalised Gaussian taps of half-width ceil(3 sigma) (a single 1 when sigma <= 0)."""
    if sigma <= 0:
        return np.ones(1)
    half = int(np.ceil(3.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    return taps / taps.sum()


def peak_position(c: np.ndarray) -> float:
    """Sub-point index of the maximum of ``c`` by Gaussian interpolation through 3 points.

    The first maximum wins ties; at either end there is no neighbour and no refinement.
    The parabola goes through the logarithms of the three values when all are positive (exact
    for a Gaussian peak), else through the values themselves; the offset is kept within
    half a point.
    """
    j = int(np.argmax(c))
    if j == 0 or j == c.size - 1:
        return float(j)
    left, centre, right = float(c[j - 1]), float(c[j]), float(c[j + 1])
    if left > 0.0 and right > 0.0:  # centre >= both, hence positive too
        left, centre, right = np.log(left), np.log(centre), np.log(right)
    curvature = left - 2.0 * centre + right
    if curvature >= 0.0:  # flat: keep the integer peak
        return float(j)
    return j + float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def smoothed_correlation_peak(c_wide: np.ndarray, sigma: float = SHIFT_SMOOTH_SIGMA) -> float:
    """Peak lag of a correlation computed over +-(max_lag + h), h = ceil(3 sigma).

    ``c_wide`` is smoothed by :func:`gaussian_taps` ('valid' convolution, leaving the lags
    -max_lag..max_lag) and its peak interpolated by :func:`peak_position`; returns the lag.
    """
    taps = gaussian_taps(sigma)
    c = np.convolve(c_wide, taps, mode="valid")
    return peak_position(c) - (c.size - 1) // 2


def estimate_shift(
    ref: np.ndarray, x: np.ndarray, max_lag: int, smooth_sigma: float = SHIFT_SMOOTH_SIGMA
) -> float:
    """Shift d (points, sub-point) with ``x[i] ~= ref[i - d]``, |d| <= max_lag.

    :func:`cross_correlation` over +-(max_lag + h), smoothed by a Gaussian of ``smooth_sigma``
    lags, and its peak interpolated (:func:`smoothed_correlation_peak`).
    """
    half = gaussian_taps(smooth_sigma).size // 2
    return smoothed_correlation_peak(cross_correlation(ref, x, max_lag + half), smooth_sigma)


def estimate_shifts(ref: np.ndarray, spectra: np.ndarray, max_lag: int) -> np.ndarray:
    """:func:`estimate_shift` of every row of ``spectra`` [R, L] against ``ref`` [L]."""
    return np.array([estimate_shift(ref, row, max_lag) for row in np.atleast_2d(spectra)])


def apply_shift(x: np.ndarray, shift: float | np.ndarray) -> np.ndarray:
    """``y[i] = x[i - shift]`` by linear interpolation with circular wrap, along the last axis.

    ``shift`` is a scalar or one value per row. SciPy equivalent, per row:
    ``scipy.ndimage.shift(x, shift, order=1, mode="grid-wrap")``.
    """
    x = np.asarray(x, dtype=np.float64)
    length = x.shape[-1]
    shift = np.asarray(shift, dtype=np.float64)[..., None]
    whole = np.floor(shift)
    frac = shift - whole
    index = (np.arange(length) - whole.astype(np.int64)) % length
    previous = (index - 1) % length
    return (1.0 - frac) * np.take_along_axis(x, np.broadcast_to(index, x.shape), -1) + (
        frac * np.take_along_axis(x, np.broadcast_to(previous, x.shape), -1)
    )


def apply_shift_field(x: np.ndarray, shift_field: np.ndarray) -> np.ndarray:
    """``y[i] = x[i - d(i)]`` for a per-point shift field d [L], linear interpolation, wrap."""
    x = np.asarray(x, dtype=np.float64)
    length = x.shape[-1]
    source = np.arange(length) - np.asarray(shift_field, dtype=np.float64)
    whole = np.floor(source)
    frac = source - whole
    lo = whole.astype(np.int64) % length
    hi = (lo + 1) % length
    return (1.0 - frac) * x[..., lo] + frac * x[..., hi]


def find_anchors(ref: np.ndarray, n_anchors: int, window: int, alpha: float = 8.0) -> np.ndarray:
    """Positions of up to ``n_anchors`` strong, separated peaks of ``ref`` (local alignment).

    Candidates are local maxima above ``median + alpha * mad_sigma``; the strongest are taken
    greedily at least ``window`` points apart and at least ``window`` from either end.
    """
    r = np.asarray(ref, dtype=np.float64)
    length = r.size
    tau = median(r) + alpha * mad_sigma(r)
    inner = r[1:-1]
    is_peak = (inner > r[:-2]) & (inner >= r[2:]) & (inner >= tau)
    candidates = np.flatnonzero(is_peak) + 1
    candidates = candidates[(candidates >= window) & (candidates < length - window)]
    chosen: list[int] = []
    for pos in candidates[np.argsort(-r[candidates], kind="stable")]:
        if all(abs(pos - c) >= window for c in chosen):
            chosen.append(int(pos))
            if len(chosen) == n_anchors:
                break
    return np.array(sorted(chosen), dtype=np.int64)


def local_shift_field(
    ref: np.ndarray,
    x: np.ndarray,
    window: int = 128,
    max_lag: int = 10,
    n_anchors: int = 16,
) -> np.ndarray:
    """Per-point residual shift field d [L] of ``x`` against ``ref`` from anchor windows.

    For each anchor peak of ``ref`` (:func:`find_anchors`), the shift of ``x`` inside
    ``[anchor - window, anchor + window]`` is the smoothed, interpolated peak
    (:func:`smoothed_correlation_peak`) of the windowed correlation (``ref`` centred on its
    window mean) over +-max_lag; anchors whose peak sits on the lag boundary are dropped.
    The field interpolates linearly between anchors and is constant beyond them (zero when
    no anchor survives).
    """
    r = np.asarray(ref, dtype=np.float64)
    v = np.asarray(x, dtype=np.float64)
    length = r.size
    half = gaussian_taps(SHIFT_SMOOTH_SIGMA).size // 2
    positions, shifts = [], []
    for anchor in find_anchors(r, n_anchors, window):
        span = np.arange(anchor - window, anchor + window + 1)
        r_win = r[span] - r[span].mean()
        lags = range(-max_lag - half, max_lag + half + 1)
        c = np.array([np.dot(r_win, v[(span + lag) % length]) for lag in lags])
        shift = smoothed_correlation_peak(c)
        if abs(shift) < max_lag:  # a peak on the lag boundary is no estimate
            positions.append(anchor)
            shifts.append(shift)
    if not positions:
        return np.zeros(length)
    return np.interp(np.arange(length), positions, shifts)


# --------------------------------------------------------------------------- scale and fusion


SCALE_METHODS = ("deming", "ls", "inverse")


def ls_scale(
    ref: np.ndarray,
    x: np.ndarray,
    mask: np.ndarray,
    method: str = "deming",
    noise_ref: float = 0.0,
    noise_x: float = 0.0,
) -> float:
    """Amplitude scale s with ``s * x ~= ref`` on the peak mask (METHOD 2.2).

    With ``Sxx = sum_M x^2``, ``Syy = sum_M ref^2``, ``Sxy = sum_M ref*x``:

    - "ls": METHOD's formula ``Sxy / Sxx``. Noise in x inflates Sxx, so a noisy rung's
      scale comes out low (regression dilution, tens of percent for rung 0 of a ladder).
    - "inverse": ``Syy / Sxy``, x regressed on ref; biased the other way by ref's noise.
    - "deming" (default): the errors-in-variables least squares with both noises
      (``noise_ref``, ``noise_x``: standard deviations), consistent whatever the SNRs:
      ``s = (Syy - d Sxx + sqrt((Syy - d Sxx)^2 + 4 d Sxy^2)) / (2 Sxy)`` with
      ``d = noise_ref^2 / noise_x^2``.
      It is "ls" when ``noise_x = 0`` and "inverse" when ``noise_ref = 0``.

    NaN when Sxy (or Sxx for "ls") is zero.
    """
    m = np.asarray(mask, dtype=bool)
    r = np.asarray(ref, dtype=np.float64)[m]
    v = np.asarray(x, dtype=np.float64)[m]
    sxx, syy, sxy = float(np.dot(v, v)), float(np.dot(r, r)), float(np.dot(r, v))
    if method == "ls" or (method == "deming" and noise_x == 0.0):
        return sxy / sxx if sxx != 0 else float("nan")
    if method not in SCALE_METHODS:
        raise InputError(f"scale method {method!r}: use one of {SCALE_METHODS}")
    if sxy == 0:
        return float("nan")
    if method == "inverse" or noise_ref == 0.0:
        return syy / sxy
    ratio = noise_ref / noise_x
    if ratio > 1e150:  # noise_x negligible against noise_ref: the "ls" limit (d would overflow)
        return sxy / sxx if sxx != 0 else float("nan")
    d = ratio * ratio
    spread = syy - d * sxx
    root = np.sqrt(spread * spread + 4.0 * d * sxy * sxy)
    if spread >= 0.0:
        return (spread + root) / (2.0 * sxy)
    return 2.0 * d * sxy / (root - spread)  # the same root, without cancellation


def fusion_weights(
    snr: np.ndarray,
    t_hat: float,
    method: str = "snr",
    gamma: float = 2.0,
    w_max: float | None = None,
) -> np.ndarray:
    """Normalised fusion weights of METHOD 3.1 (they sum to 1).

    method "snr": ``w_k ~ max(SNR_k, 0)**gamma`` (gamma = 2 is inverse-variance weighting,
    the minimum-noise fusion; METHOD's range 0.5-1.5 is allowed); "t": ``w_k ~ t_hat**(gamma*k)``;
    "top": all weight on the top rung. ``w_max`` caps every normalised weight (water-filling:
    the excess of capped rungs is shared among the others in proportion to their weights), so
    no single rung, e.g. one whose SNR was overestimated, dominates the pseudo-truth.
    """
    snr = np.asarray(snr, dtype=np.float64)
    rungs = snr.size
    if method == "snr":
        raw = np.maximum(snr, 0.0) ** gamma
    elif method == "t":
        raw = float(t_hat) ** (gamma * np.arange(rungs))
    elif method == "top":
        raw = np.zeros(rungs)
        raw[-1] = 1.0
    else:
        raise InputError(f"fusion weights: unknown method {method!r} (use 'snr', 't' or 'top')")
    if not np.all(np.isfinite(raw)) or raw.sum() <= 0:
        raise InputError(f"fusion weights: no usable rung weight from SNRs {snr.tolist()}")
    weights = raw / raw.sum()
    if w_max is not None:
        if not 1.0 / rungs <= w_max <= 1.0:
            raise InputError(
                f"fusion weights: w_max={w_max} must lie in [1/R, 1] = [{1 / rungs:.3g}, 1]"
            )
        weights = _water_fill(weights, w_max)
    return weights


def _water_fill(weights: np.ndarray, cap: float) -> np.ndarray:
    weights = weights.copy()
    capped = np.zeros(weights.size, dtype=bool)
    while True:
        over = (weights > cap + 1e-15) & ~capped
        if not over.any():
            return weights
        capped |= over
        weights[capped] = cap
        free = ~capped
        remaining = 1.0 - cap * capped.sum()
        if weights[free].sum() > 0:
            weights[free] *= remaining / weights[free].sum()
        else:  # the uncapped rungs had no weight (e.g. weights="top"): share the rest equally
            weights[free] = remaining / free.sum()


def fuse(spectra: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of the rungs: ``sum_k w_k x_k / sum_k w_k`` (METHOD 3.1)."""
    w = np.asarray(weights, dtype=np.float64)
    return (w @ np.asarray(spectra, dtype=np.float64)) / w.sum()


# --------------------------------------------------------------------------- the ladder chain


@dataclass(frozen=True)
class PreprocessOptions:
    """Options of :func:`preprocess_ladder` (every length in points)."""

    reference: str = (
        "top"  # "top": align/scale to the top rung; "fused": a second pass against s_hat
    )
    max_lag: int = 50  # global alignment searches shifts in [-max_lag, max_lag]
    local: bool = False  # local alignment in windows around anchor peaks (non-linear drift)
    local_window: int = 128
    local_max_lag: int = 10
    n_anchors: int = 16
    alpha: float = 4.0  # peak threshold, in noise sigmas above the median
    dilate_radius: int = 4  # M covers peak skirts: every run grows by at least this ...
    dilate_relative: float = 1.5  # ... and by this fraction of its own length (broad lines)
    erode_radius: int = 2  # B keeps away from peak feet
    trend_radius: int = 64  # noise is measured around a local baseline mean of this radius
    smooth_windows: tuple[int, ...] = (9,)  # Savitzky-Golay widths; each finds its own peaks
    smooth_polyorder: int = 2
    weights: str = "snr"  # fusion weights: "snr", "t" or "top"
    gamma: float = 2.0
    w_max: float | None = None
    scale_method: str = "deming"  # "deming" (both noises), "ls" (METHOD's formula) or "inverse"
    snr_percentile: float = 95.0

    def min_length(self) -> int:
        needed = [2 * self.max_lag + 1, *self.smooth_windows, 2 * self.dilate_radius + 1, 16]
        if self.local:
            needed.append(2 * self.local_window + 1)
        return max(needed)


@dataclass
class LadderResult:
    """Everything :func:`preprocess_ladder` derived from one ladder [R, L].

    aligned: xbar of METHOD, the rungs after centring (median removed), alignment and
      re-scaling, in the reference rung's amplitude units [R, L];
    offsets: the medians removed [R]; shifts: the drift of each rung against the reference,
      points, per SHIFT_CONVENTION [R] (0 for the top rung with reference "top");
    scales: the LS scales s_k [R]; peak_mask / base_mask: M and B [L];
    sigma: robust noise of each re-scaled rung [R]; snr: METHOD 2.4 SNR [R];
    t_hat: median of sigma_k / sigma_{k+1}; weights: fusion weights [R]; s_hat: pseudo-truth [L];
    shift_fields: total per-point shift of each rung [R, L] when local alignment ran, else None;
    params: the options used.
    """

    aligned: np.ndarray
    offsets: np.ndarray
    shifts: np.ndarray
    scales: np.ndarray
    peak_mask: np.ndarray
    base_mask: np.ndarray
    sigma: np.ndarray
    snr: np.ndarray
    t_hat: float
    weights: np.ndarray
    s_hat: np.ndarray
    shift_fields: np.ndarray | None = None
    params: dict = field(default_factory=dict)


@dataclass
class LadderBatchResult:
    """:class:`LadderResult` fields stacked over N ladders (masks [N, L], t_hat [N], ...)."""

    aligned: np.ndarray
    offsets: np.ndarray
    shifts: np.ndarray
    scales: np.ndarray
    peak_mask: np.ndarray
    base_mask: np.ndarray
    sigma: np.ndarray
    snr: np.ndarray
    t_hat: np.ndarray
    weights: np.ndarray
    s_hat: np.ndarray
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.aligned.shape[0]

    def __getitem__(self, i: int) -> LadderResult:
        values = {f.name: getattr(self, f.name)[i] for f in fields(self) if f.name != "params"}
        return LadderResult(**values, params=self.params)


def make_options(**options) -> PreprocessOptions:
    """Options from keywords, rejecting unknown names and impossible values."""
    known = {f.name for f in fields(PreprocessOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown preprocessing option(s) {unknown}; known: {sorted(known)}")
    opts = PreprocessOptions(**options)
    if opts.scale_method not in SCALE_METHODS:
        raise InputError(f"option scale_method={opts.scale_method!r}: use one of {SCALE_METHODS}")
    if opts.reference not in ("top", "fused"):
        raise InputError(f"option reference={opts.reference!r}: use 'top' or 'fused'")
    windows = (
        (opts.smooth_windows,) if np.isscalar(opts.smooth_windows) else tuple(opts.smooth_windows)
    )
    opts = replace(opts, smooth_windows=tuple(int(w) for w in windows))
    if not windows or any(w > 1 and (w % 2 == 0 or w <= opts.smooth_polyorder) for w in windows):
        raise InputError(
            f"option smooth_windows={windows}: each must be odd and > smooth_polyorder"
        )
    for name in (
        "max_lag",
        "dilate_radius",
        "erode_radius",
        "local_window",
        "local_max_lag",
        "trend_radius",
    ):
        if getattr(opts, name) < 0:
            raise InputError(f"option {name}={getattr(opts, name)} must be >= 0")
    return opts


def validate_ladder(ladder, opts: PreprocessOptions, name: str = "ladder") -> np.ndarray:
    """The ladder as float64 [R, L], or an InputError that names the problem."""
    if isinstance(ladder, (list, tuple)):
        lengths = {np.shape(rung) for rung in ladder}
        if len(lengths) > 1:
            raise InputError(
                f"{name}: rungs of different shapes {sorted(lengths)}; "
                "every rung needs the same length"
            )
    arr = np.asarray(ladder)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name}: expected a numeric array [R, L], got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise InputError(
            f"{name}: expected shape [R, L] with at least 2 rungs, got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise InputError(f"{name}: the rungs are empty (length 0)")
    if arr.shape[1] < opts.min_length():
        raise InputError(
            f"{name}: length {arr.shape[1]} is too short for the options "
            f"(needs >= {opts.min_length()}: max_lag={opts.max_lag}, "
            f"smooth_windows={opts.smooth_windows}, local_window={opts.local_window})"
        )
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        rung, point = np.argwhere(bad)[0]
        raise InputError(
            f"{name}: {int(bad.sum())} NaN/Inf value(s), first at rung {rung}, point {point}"
        )
    for k, rung in enumerate(arr):
        if np.ptp(rung) == 0:
            raise InputError(
                f"{name}: rung {k} is constant (value {rung[0]:g}); no noise or signal to use"
            )
        if mad_sigma(rung) == 0:
            raise InputError(
                f"{name}: rung {k} has zero robust noise "
                "(MAD = 0: over half of its points are equal)"
            )
    return arr


def _shift_mask(mask: np.ndarray, shift_field: np.ndarray) -> np.ndarray:
    """A mask of the aligned frame carried back to a rung's own frame (nearest point)."""
    length = mask.size
    return mask[(np.arange(length) - np.rint(shift_field).astype(np.int64)) % length]


def _align(centred: np.ndarray, ref: np.ndarray, opts: PreprocessOptions, skip_top: bool):
    """Shifts [R], per-point shift fields [R, L] and the aligned rungs [R, L]."""
    rungs, length = centred.shape
    shifts = np.zeros(rungs)
    fields_ = np.zeros((rungs, length))
    aligned = centred.copy()
    for k in range(rungs):
        if skip_top and k == rungs - 1:
            continue
        shifts[k] = estimate_shift(ref, centred[k], opts.max_lag)
        fields_[k] = shifts[k]
        aligned[k] = apply_shift(centred[k], -shifts[k])
        if opts.local:
            residual = local_shift_field(
                ref, aligned[k], opts.local_window, opts.local_max_lag, opts.n_anchors
            )
            fields_[k] += residual
            aligned[k] = apply_shift_field(centred[k], -fields_[k])
    return shifts, fields_, aligned


def _masks_scales_noise(centred, aligned, fields_, ref, ref_is_rung, opts, name):
    """Masks, LS scales and per-rung noise for aligned rungs against ``ref``."""
    rungs = aligned.shape[0]
    first_noise = np.array(
        [robust_scale(centred[k], trend_radius=opts.trend_radius)[1] for k in range(rungs)]
    )
    peak_mask, base_mask = peak_and_baseline_masks(
        aligned,
        first_noise,
        opts.alpha,
        opts.dilate_radius,
        opts.dilate_relative,
        opts.erode_radius,
        opts.smooth_windows,
        opts.smooth_polyorder,
    )
    if not peak_mask.any():
        raise InputError(f"{name}: no peak above the threshold (alpha={opts.alpha} noise sigmas)")
    if not base_mask.any():
        raise InputError(
            f"{name}: the peak mask covers the whole spectrum; no baseline left for the noise"
        )
    # Noise is measured on each rung as acquired (interpolation would smooth it), on the
    # baseline mask carried back to the rung's own frame.
    raw_sigma = np.array(
        [
            mad_sigma_detrended(centred[k], _shift_mask(base_mask, fields_[k]), opts.trend_radius)
            for k in range(rungs)
        ]
    )
    # The Deming fit needs the noise of the aligned copies, which interpolation smoothed.
    noise_ref = mad_sigma_detrended(ref, base_mask, opts.trend_radius)
    scales = np.array(
        [
            1.0
            if k == ref_is_rung
            else ls_scale(
                ref,
                aligned[k],
                peak_mask,
                opts.scale_method,
                noise_ref,
                mad_sigma_detrended(aligned[k], base_mask, opts.trend_radius),
            )
            for k in range(rungs)
        ]
    )
    bad = np.flatnonzero(~(scales > 0))
    if bad.size:
        raise InputError(
            f"{name}: rung {int(bad[0])} does not correlate positively with the reference on the "
            f"peak mask (scale {scales[bad[0]]:.3g}); check its phase and sign"
        )
    return peak_mask, base_mask, scales, scales * raw_sigma


def preprocess_ladder(ladder, name: str = "ladder", **options) -> LadderResult:
    """Run METHOD 2.1-2.4 and 3.1 on one ladder [R, L] (rung 0 = lowest SNR, R-1 = highest).

    Steps: centre each rung on its median; align every rung to the top rung (global shift by
    cross-correlation with sub-point refinement, optional local windows); masks M and B from
    the pointwise max of the smoothed rungs in units of their own noise; the scale of each
    rung on M (Deming least squares); robust noise sigma_k on B, measured on each rung as
    acquired; SNR_k; T_hat; SNR-weighted fusion into s_hat. With
    ``reference="fused"`` a second pass aligns and scales every rung against that s_hat.
    Options: see :class:`PreprocessOptions`. Raises InputError on bad input.
    """
    opts = make_options(**options)
    data = validate_ladder(ladder, opts, name)
    offsets = np.median(data, axis=1)
    centred = data - offsets[:, None]

    top = data.shape[0] - 1
    shifts, fields_, aligned = _align(centred, centred[top], opts, skip_top=True)
    measured = _measure(centred, aligned, fields_, centred[top], top, opts, name)
    if opts.reference == "fused":
        s_hat = measured["s_hat"]
        shifts, fields_, aligned = _align(centred, s_hat, opts, skip_top=False)
        measured = _measure(centred, aligned, fields_, s_hat, None, opts, name)

    return LadderResult(
        offsets=offsets,
        shifts=shifts,
        shift_fields=fields_.astype(np.float32) if opts.local else None,
        params=asdict(opts),
        **measured,
    )


def _measure(centred, aligned, fields_, ref, ref_is_rung, opts, name) -> dict:
    """Masks, scales, noise, SNR, T_hat, weights and s_hat of aligned rungs against ``ref``."""
    peak_mask, base_mask, scales, sigma = _masks_scales_noise(
        centred, aligned, fields_, ref, ref_is_rung, opts, name
    )
    if np.any(sigma <= 0):
        raise InputError(f"{name}: zero noise on the baseline mask in rung {int(np.argmin(sigma))}")
    rescaled = scales[:, None] * aligned
    baseline_level = np.array([median(r, base_mask) for r in rescaled])
    p95 = np.array([percentile(r, opts.snr_percentile, peak_mask) for r in rescaled])
    snr = (p95 - baseline_level) / sigma
    t_hat = float(np.median(sigma[:-1] / sigma[1:]))
    weights = fusion_weights(snr, t_hat, opts.weights, opts.gamma, opts.w_max)
    return {
        "aligned": rescaled.astype(np.float32),
        "scales": scales,
        "peak_mask": peak_mask,
        "base_mask": base_mask,
        "sigma": sigma,
        "snr": snr,
        "t_hat": t_hat,
        "weights": weights,
        "s_hat": fuse(rescaled, weights).astype(np.float32),
    }


def preprocess_ladders(batch, name: str = "ladders", **options) -> LadderBatchResult:
    """:func:`preprocess_ladder` over a batch [N, R, L]; the fields come back stacked."""
    arr = np.asarray(batch)
    if arr.ndim != 3:
        raise InputError(f"{name}: expected shape [N, R, L], got shape {arr.shape}")
    results = [
        preprocess_ladder(arr[i], name=f"{name}[{i}]", **options) for i in range(arr.shape[0])
    ]
    if not results:
        raise InputError(f"{name}: the batch is empty")
    stacked = {
        f.name: np.stack([getattr(r, f.name) for r in results])
        for f in fields(LadderBatchResult)
        if f.name != "params"
    }
    return LadderBatchResult(**stacked, params=results[0].params)
