"""Metrics of METHOD section 7 on single spectra (NumPy and SciPy only, no torch).

Every function takes 1D spectra of one length L (any amplitude units: the caller keeps the
output, the input and the reference in one frame and one unit) and returns plain floats or
small arrays. The evaluation protocol that combines them lives in
:mod:`nmrladder.train.evaluate`; the definitions are collected in docs/evaluation.md.

- Error-based SNR: :func:`error_snr_db` (whole spectrum or a mask), :func:`peak_regions`
  (the truth's peak regions P), :func:`runs_touching`.
- METHOD 7.1: :func:`snr_out`, the mask-based SNR of one spectrum.
- METHOD 7.2: :func:`detect_peaks` (one detector, threshold in units of a noise sigma that
  the caller fixes per sample for every method), :func:`match_peaks`, :func:`peak_scores`.
- METHOD 7.3: :func:`fwhm`, :func:`peak_integral`, :func:`relative_error`,
  :func:`height_retention`.
- METHOD 7.4: :func:`l1_error`, :func:`l2_error`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, label
from scipy.optimize import linear_sum_assignment
from scipy.signal import find_peaks, peak_widths

__all__ = [
    "PeakScores",
    "Peaks",
    "baseline_level",
    "detect_peaks",
    "error_snr_db",
    "fwhm",
    "height_retention",
    "l1_error",
    "l2_error",
    "main_peaks",
    "match_peaks",
    "peak_integral",
    "peak_regions",
    "peak_scores",
    "refine_positions",
    "relative_error",
    "runs_touching",
    "snr_out",
]


def _selected(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values if mask is None else values[np.asarray(mask, dtype=bool)]


# --------------------------------------------------------------------------- SNR


def error_snr_db(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Error-based SNR in dB: ``10 log10(sum t^2 / sum (z - t)^2)`` over ``mask`` (or all).

    ``z`` is the estimate (a denoiser's output, or the noisy input), ``t`` the truth in the
    same units. +inf for an exact estimate; -inf when the truth is zero on the selection and
    the estimate is not; NaN for an empty selection. The gain of a method over its input is
    ``error_snr_db(output, t) - error_snr_db(input, t) = 10 log10(E_input / E_output)``, the
    reduction of the squared error, whatever the signal power.
    """
    z, t = _selected(estimate, mask), _selected(truth, mask)
    if z.size == 0:
        return float("nan")
    signal = float(np.sum(t * t))
    error = float(np.sum((z - t) ** 2))
    with np.errstate(divide="ignore"):
        return float(10.0 * (np.log10(signal) - np.log10(error)))


def peak_regions(
    lines: np.ndarray, sigma: float, fraction: float = 1.0, dilate_radius: int = 1
) -> np.ndarray:
    """Peak regions P of a noise-free line spectrum: ``|lines| >= fraction * sigma``, dilated.

    ``lines`` is the line spectrum without baseline (the simulator's ``truth_peaks``),
    ``sigma`` the input's noise std in the same units. With ``fraction`` 1 (the evaluation's
    choice) every point of P carries at least the noise's power, so zeroing it costs at least
    as much squared error as leaving the noise; the dilation (1 point by default; outside the
    array counts as False) adds the crossing points at the line feet. Returns bool [L].
    """
    core = np.abs(np.asarray(lines, dtype=np.float64)) >= fraction * float(sigma)
    if dilate_radius <= 0 or not core.any():
        return core
    return binary_dilation(core, structure=np.ones(2 * dilate_radius + 1, dtype=bool))


def runs_touching(mask: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The runs of True values of a 1D mask that have a point in ``[start, stop)`` (bool [L]).

    The evaluation removes the solvent line's run from the peak regions with it.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, _ = label(mask)
    touched = np.unique(labels[max(0, start):max(0, stop)])
    return np.isin(labels, touched[touched > 0])


def baseline_level(y: np.ndarray, base_mask: np.ndarray | None = None) -> float:
    """Median of ``y`` over the baseline mask (over all points when it is None or empty)."""
    values = _selected(y, base_mask)
    return float(np.median(values if values.size else np.asarray(y, dtype=np.float64)))


def snr_out(
    y: np.ndarray,
    peak_mask: np.ndarray,
    base_mask: np.ndarray,
    window: tuple[int, int] | None = None,
    percentile: float = 95.0,
) -> float:
    """METHOD 7.1: ``(P95(y_M) - median(y_B)) / std(y_B)`` inside a fixed window.

    M and B are the peak and baseline masks, ``window`` a point range ``(start, stop)`` (the
    whole spectrum when None); std is the plain population std (ddof 0). Dimensionless.
    +inf when the baseline is exactly flat and the peaks stand above it; NaN when a mask is
    empty inside the window.
    """
    span = slice(None) if window is None else slice(int(window[0]), int(window[1]))
    y = np.asarray(y, dtype=np.float64)[span]
    peaks = y[np.asarray(peak_mask, dtype=bool)[span]]
    base = y[np.asarray(base_mask, dtype=bool)[span]]
    if peaks.size == 0 or base.size == 0:
        return float("nan")
    height = float(np.percentile(peaks, percentile) - np.median(base))
    spread = float(np.std(base))
    if spread == 0.0:
        return float("inf") if height > 0 else float("nan")
    return height / spread


# --------------------------------------------------------------------------- peaks


@dataclass
class Peaks:
    """Peaks of one spectrum: ``indices`` (int, the local maxima), ``positions`` (points,
    sub-point by a parabola through the top three points), ``heights`` (above the baseline
    level the detector used) and ``prominences`` (scipy's), each [n]."""

    indices: np.ndarray
    positions: np.ndarray
    heights: np.ndarray
    prominences: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.size)

    def subset(self, keep: np.ndarray) -> Peaks:
        """The peaks selected by a bool mask or index array."""
        return Peaks(
            self.indices[keep], self.positions[keep], self.heights[keep], self.prominences[keep]
        )

    def above(self, limit: float) -> np.ndarray:
        """Bool [n]: the peaks whose height and prominence both reach ``limit``."""
        return (self.heights >= limit) & (self.prominences >= limit)


def refine_positions(y: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Sub-point positions of local maxima: the vertex of the parabola through the maximum
    and its two neighbours (offset clipped to +-0.5 point; edge points are not refined)."""
    y = np.asarray(y, dtype=np.float64)
    idx = np.asarray(indices, dtype=np.int64)
    pos = idx.astype(np.float64)
    inner = (idx > 0) & (idx < y.size - 1)
    i = idx[inner]
    left, mid, right = y[i - 1], y[i], y[i + 1]
    curvature = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
    pos[inner] += np.clip(offset, -0.5, 0.5)
    return pos


def detect_peaks(
    y: np.ndarray, sigma: float, threshold: float = 4.0, baseline: float | None = None
) -> Peaks:
    """The one peak detector of the evaluation (scipy.signal.find_peaks).

    A peak is a local maximum whose height above ``baseline`` (default: the median of ``y``)
    and whose prominence are both at least ``threshold * sigma``. ``sigma`` is a noise std
    that the caller fixes per sample: the evaluation uses the robust noise of the noisy input
    for the input, every output and the references alike, so every method faces the same
    absolute threshold (4 sigma by default: about 0.5 false peak per 16k-point spectrum of
    pure noise, against about 20 at 3 sigma).
    """
    y = np.asarray(y, dtype=np.float64)
    level = float(np.median(y)) if baseline is None else float(baseline)
    limit = threshold * float(sigma)
    indices, props = find_peaks(y, height=level + limit, prominence=limit)
    return Peaks(indices, refine_positions(y, indices), y[indices] - level, props["prominences"])


def main_peaks(peaks: Peaks, n: int) -> Peaks:
    """The ``n`` tallest peaks (by height), in index order."""
    if len(peaks) <= n:
        return peaks
    keep = np.sort(np.argsort(peaks.heights, kind="stable")[::-1][:n])
    return peaks.subset(keep)


def _as_axis(positions: np.ndarray, axis: np.ndarray | None) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64)
    if axis is None:
        return positions
    axis = np.asarray(axis, dtype=np.float64)
    return np.interp(positions, np.arange(axis.size), axis)


def match_peaks(
    detected: np.ndarray,
    reference: np.ndarray,
    tolerance: float,
    axis: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of detected to reference peak positions within +-``tolerance``.

    Positions are in points; with ``axis`` (e.g. the ppm of every point) they are mapped onto
    it (linear interpolation) and ``tolerance`` is in the axis' units. Among all one-to-one
    assignments the largest number of pairs within the tolerance is kept, and among those
    the smallest total distance (scipy.optimize.linear_sum_assignment). Returns
    ``(detected_index, reference_index, distance)`` of the pairs, distance >= 0 in the
    tolerance's units.
    """
    det, ref = _as_axis(detected, axis), _as_axis(reference, axis)
    empty = np.zeros(0, dtype=np.int64)
    if det.size == 0 or ref.size == 0:
        return empty, empty, np.zeros(0)
    distance = np.abs(det[:, None] - ref[None, :])
    allowed = distance <= tolerance
    # A pair beyond the tolerance costs more than any set of allowed pairs can save.
    penalty = 1.0 + float(tolerance) * (min(det.size, ref.size) + 1)
    rows, cols = linear_sum_assignment(np.where(allowed, distance, penalty))
    keep = allowed[rows, cols]
    return rows[keep], cols[keep], distance[rows[keep], cols[keep]]


@dataclass
class PeakScores:
    """Detection scores of one spectrum against a reference (METHOD 7.2).

    precision = matched detections / detections; recall = matched strong reference peaks /
    strong reference peaks; f1 = their harmonic mean (0 when nothing is detected, NaN when
    there is no strong reference peak; precision is NaN without detections);
    position_error = mean |detected - reference| over the matched strong peaks, in the
    tolerance's units; false_peaks = detections matched to no reference peak; ``pairs`` =
    (detected_index, reference_index) of the matches.
    """

    precision: float
    recall: float
    f1: float
    position_error: float
    false_peaks: int
    n_detected: int
    n_strong: int
    pairs: tuple[np.ndarray, np.ndarray]


def peak_scores(
    detected: np.ndarray,
    reference: np.ndarray,
    strong: np.ndarray,
    tolerance: float,
    axis: np.ndarray | None = None,
) -> PeakScores:
    """Precision, recall, F1, position error and false peaks of detected positions.

    ``reference`` holds every reference peak that may explain a detection (the evaluation
    detects them at half the threshold), ``strong`` (bool, same length) marks the ones recall
    counts (detected at the full threshold). A detection on a weak true line is therefore
    neither a false peak nor a required one. Matching as in :func:`match_peaks`.
    """
    strong = np.asarray(strong, dtype=bool)
    det_i, ref_i, dist = match_peaks(detected, reference, tolerance, axis)
    n_det, n_strong = int(np.size(detected)), int(strong.sum())
    matched_strong = strong[ref_i]
    precision = det_i.size / n_det if n_det else float("nan")
    recall = int(matched_strong.sum()) / n_strong if n_strong else float("nan")
    if np.isnan(recall):
        f1 = float("nan")  # nothing to find
    elif np.isnan(precision) or precision + recall == 0:
        f1 = 0.0  # peaks to find, none found
    else:
        f1 = 2 * precision * recall / (precision + recall)
    position_error = float(dist[matched_strong].mean()) if matched_strong.any() else float("nan")
    return PeakScores(
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        position_error=position_error,
        false_peaks=n_det - int(det_i.size),
        n_detected=n_det,
        n_strong=n_strong,
        pairs=(det_i, ref_i),
    )


# --------------------------------------------------------------------------- line shape


def fwhm(y: np.ndarray, index: int, baseline: float = 0.0, search: int | None = None) -> float:
    """Full width at half height of the peak at ``index``, in points (scipy peak_widths).

    Half height is ``baseline + (y[index] - baseline) / 2``; the crossings are interpolated
    linearly and searched at most ``search`` points either side (default: the whole
    spectrum); where the spectrum never falls below half height in that range the width runs
    to its end. NaN when the peak does not stand above the baseline.
    """
    y = np.asarray(y, dtype=np.float64)
    height = y[index] - baseline
    if not height > 0:
        return float("nan")
    reach = y.size if search is None else int(search)
    left, right = max(0, index - reach), min(y.size - 1, index + reach)
    prominence_data = (np.array([height]), np.array([left]), np.array([right]))
    widths = peak_widths(y, np.array([index]), rel_height=0.5, prominence_data=prominence_data)
    return float(widths[0][0])


def peak_integral(y: np.ndarray, center: float, half_width: float, baseline: float = 0.0) -> float:
    """Area of ``y - baseline`` over the points within ``center +- half_width`` (points).

    The sum over those points, i.e. the midpoint rule over ``[first - 0.5, last + 0.5]``;
    units: intensity x points (multiply by the point spacing for intensity x ppm). The
    window is clipped to the spectrum.
    """
    y = np.asarray(y, dtype=np.float64)
    start = max(0, int(np.ceil(center - half_width)))
    stop = min(y.size, int(np.floor(center + half_width)) + 1)
    return float(np.sum(y[start:stop] - baseline))


def relative_error(value: float, reference: float) -> float:
    """``|value - reference| / |reference|`` (NaN when the reference is 0 or either is NaN)."""
    if not np.isfinite(value) or not np.isfinite(reference) or reference == 0:
        return float("nan")
    return abs(value - reference) / abs(reference)


def height_retention(
    y: np.ndarray,
    reference: np.ndarray,
    indices: np.ndarray,
    baseline_y: float = 0.0,
    baseline_ref: float = 0.0,
) -> np.ndarray:
    """Peak height kept: ``(y[p] - baseline_y) / (reference[p] - baseline_ref)`` at the
    reference peak indices p. 1 is perfect; below 1 the output flattened the peak."""
    idx = np.asarray(indices, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (y[idx] - baseline_y) / (ref[idx] - baseline_ref)


# --------------------------------------------------------------------------- distortion


def l1_error(y: np.ndarray, reference: np.ndarray, scale: float = 1.0) -> float:
    """METHOD 7.4's L1 distortion per point: ``mean |y - reference| / scale``.

    The evaluation passes the input's noise std as ``scale``, so pure Gaussian noise of that
    std scores sqrt(2/pi) = 0.80.
    """
    diff = np.asarray(y, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return float(np.mean(np.abs(diff)) / scale)


def l2_error(y: np.ndarray, reference: np.ndarray, scale: float = 1.0) -> float:
    """METHOD 7.4's L2 distortion per point: ``sqrt(mean (y - reference)^2) / scale``.

    With the input's noise std as ``scale``, pure Gaussian noise of that std scores 1.
    """
    diff = np.asarray(y, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)) / scale)
