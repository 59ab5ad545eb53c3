"""Public preprocessing API of the runtime (METHOD 2.1-2.4, 3.1): the compiled kernels of
``nmrladder.kernels`` behind the names and signatures of :mod:`nmrladder.runtime.reference`.

Each function converts its input once (C-contiguous float32 or float64, masks bool), rejects
NaN/Inf with an :class:`InputError` before any kernel runs, and calls the kernel; the result
equals the reference's (masks exactly, floats to rounding). Inputs a kernel does not cover
(other dtypes or shapes, degenerate options) go to the reference unchanged.

Batched functions take ``threads=None`` (None: every OpenMP thread; results do not depend on
the count). The reference is forced with the environment variable
``NMRLADDER_KERNELS=reference`` (read when this module is imported) or, within a block,
``with use_reference(): ...``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import numbers
import os
from dataclasses import asdict
from dataclasses import fields as dataclass_fields

import numpy as np
from scipy.signal import savgol_coeffs

from nmrladder.runtime import reference
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.reference import (
    SHIFT_SMOOTH_SIGMA,
    LadderBatchResult,
    LadderResult,
    PreprocessOptions,
)

try:
    from nmrladder.kernels import align as _align
    from nmrladder.kernels import checks as _checks
    from nmrladder.kernels import ladder as _ladder
    from nmrladder.kernels import masks as _masks
    from nmrladder.kernels import rescale as _rescale
    from nmrladder.kernels import robust as _robust
except ImportError:  # not built: everything runs on the reference (see backend())
    KERNELS_BUILT = False
else:
    KERNELS_BUILT = True

__all__ = [
    "KERNELS_BUILT",
    "LadderBatchResult",
    "LadderResult",
    "PreprocessOptions",
    "apply_shift",
    "apply_shift_field",
    "backend",
    "cross_correlation",
    "dilate",
    "dilate_components",
    "erode",
    "estimate_shift",
    "estimate_shifts",
    "fuse",
    "fusion_weights",
    "local_shift_field",
    "ls_scale",
    "mad_sigma",
    "mad_sigma_batch",
    "mad_sigma_detrended",
    "median",
    "median_and_percentile",
    "peak_and_baseline_masks",
    "percentile",
    "preprocess_ladder",
    "preprocess_ladders",
    "robust_scale",
    "robust_scale_batch",
    "smooth",
    "threshold_mask",
    "use_reference",
]

_FORCE_REFERENCE = contextvars.ContextVar("nmrladder_force_reference", default=False)


@contextlib.contextmanager
def use_reference(enabled: bool = True):
    """Run this module's functions on the NumPy reference inside the block (for comparisons)."""
    token = _FORCE_REFERENCE.set(enabled)
    try:
        yield
    finally:
        _FORCE_REFERENCE.reset(token)


def backend() -> str:
    """``"kernels"`` or ``"reference"``: what this module's functions run on right now."""
    return "kernels" if _kernels_on() else "reference"


# Read once: the environment switch applies to the process (use_reference() within it).
_ENVIRONMENT_FORCES_REFERENCE = (
    os.environ.get("NMRLADDER_KERNELS", "").strip().lower() == "reference"
)


def _kernels_on() -> bool:
    return KERNELS_BUILT and not _ENVIRONMENT_FORCES_REFERENCE and not _FORCE_REFERENCE.get()


def _threads(threads: int | None) -> int:
    if threads is None:
        return 0
    if not isinstance(threads, numbers.Integral) or threads < 1:
        raise InputError(f"threads={threads!r}: use a positive integer, or None for all cores")
    return int(threads)


# --------------------------------------------------------------------------- input conversion


def _floats(x) -> np.ndarray | None:
    """x as a C-contiguous float32 (kept) or float64 array; None for what the kernels skip."""
    arr = np.asarray(x)
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iub" or arr.dtype == np.float16:
        return np.ascontiguousarray(arr, dtype=np.float64)
    return None


def _checked(arr: np.ndarray, function: str, what: str) -> np.ndarray:
    bad = _checks.nonfinite_count(arr.reshape(-1))
    if bad:
        raise InputError(f"{function}: {bad} NaN/Inf value(s) in {what}")
    return arr


def _mask_bytes(mask, shape) -> np.ndarray | None:
    """mask as C-contiguous uint8 0/1 of the given shape, or None if it has another shape."""
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape):
        return None
    return np.ascontiguousarray(m).view(np.uint8)


def _is_int(value) -> bool:
    return type(value) is int or isinstance(value, numbers.Integral)


def _is_real(value) -> bool:
    if type(value) is not float and not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value)


@functools.lru_cache(maxsize=64)
def _savgol_taps(window: int, polyorder: int) -> np.ndarray:
    # reference.smooth: windows @ coeffs[::-1]
    if window <= 1:
        return np.ones(1)
    return np.ascontiguousarray(savgol_coeffs(window, polyorder)[::-1])


@functools.lru_cache(maxsize=64)
def _gaussian_taps(sigma: float) -> np.ndarray:
    return np.ascontiguousarray(reference.gaussian_taps(sigma))


# --------------------------------------------------------------------------- robust statistics


def _row_stats(x, mask, q: float, want: int):
    arr = _floats(x)
    if arr is None:
        return None
    m = None
    if mask is not None:
        m = _mask_bytes(mask, arr.shape)
        if m is None:
            return None
        m = m.reshape(1, -1)
    _checked(arr, "robust statistics", "x")
    return _robust.robust_stats(arr.reshape(1, -1), m, q, want)


def _valid_percentile(q) -> bool:
    return isinstance(q, numbers.Real) and 0.0 <= q <= 100.0


def median(x: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Median of ``x`` (over ``mask`` where given); NaN for an empty selection.

    Kernel: radix selection (robust.robust_stats). NumPy: ``np.median(x[mask])``.
    """
    if _kernels_on():
        stats = _row_stats(x, mask, 0.0, _robust.MEDIAN)
        if stats is not None:
            return float(stats[0][0])
    return reference.median(x, mask)


def percentile(x: np.ndarray, q: float, mask: np.ndarray | None = None) -> float:
    """The q-th percentile with linear interpolation between order statistics.

    Kernel: radix selection. NumPy: ``np.percentile(x[mask], q)``.
    """
    if _kernels_on() and _valid_percentile(q):
        stats = _row_stats(x, mask, float(q), _robust.PERCENTILE)
        if stats is not None:
            return float(stats[1][0])
    return reference.percentile(x, q, mask)


def median_and_percentile(
    x: np.ndarray, q: float = 95.0, mask: np.ndarray | None = None
) -> tuple[float, float]:
    """Median and q-th percentile together, from one selection pass."""
    if _kernels_on() and _valid_percentile(q):
        stats = _row_stats(x, mask, float(q), _robust.MEDIAN | _robust.PERCENTILE)
        if stats is not None:
            return float(stats[0][0]), float(stats[1][0])
    return reference.median_and_percentile(x, q, mask)


def mad_sigma(x: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust noise standard deviation ``1.4826 * median(|x - median(x)|)`` (over ``mask``)."""
    if _kernels_on():
        stats = _row_stats(x, mask, 0.0, _robust.MAD)
        if stats is not None:
            return float(stats[2][0])
    return reference.mad_sigma(x, mask)


def mad_sigma_batch(
    spectra: np.ndarray, masks: np.ndarray | None = None, threads: int | None = None
) -> np.ndarray:
    """:func:`mad_sigma` of every row of ``spectra`` [N, L] (over the row of ``masks``)."""
    if _kernels_on():
        arr = _floats(np.atleast_2d(spectra))
        if arr is not None and arr.ndim >= 2:
            rows = arr.reshape(arr.shape[0], -1)
            m = None
            if masks is not None:
                m = _mask_bytes(np.broadcast_to(masks, arr.shape), arr.shape)
                m = m.reshape(rows.shape)
            _checked(arr, "mad_sigma_batch", "spectra")
            return _robust.robust_stats(rows, m, 0.0, _robust.MAD, _threads(threads))[2]
    return reference.mad_sigma_batch(spectra, masks)


def mad_sigma_detrended(x: np.ndarray, mask: np.ndarray, radius: int = 64) -> float:
    """:func:`mad_sigma` over ``mask`` after removing the local mean of the masked values."""
    if _kernels_on() and _is_int(radius) and radius >= 0:
        arr = _floats(x)
        if arr is not None and arr.ndim == 1:
            m = _mask_bytes(mask, arr.shape)
            if m is not None:
                _checked(arr, "mad_sigma_detrended", "x")
                rows = arr.reshape(1, -1)
                return float(_robust.mad_sigma_detrended_rows(rows, m.reshape(1, -1), radius)[0])
    return reference.mad_sigma_detrended(x, mask, radius)


def robust_scale(
    x: np.ndarray, alpha: float = 5.0, dilate_radius: int = 8, trend_radius: int = 64
) -> tuple[float, float]:
    """Baseline level and noise sigma of one spectrum without a ladder (inference scaling)."""
    if _kernels_on() and np.ndim(x) == 1:
        centers, sigmas = _robust_scale_rows(
            np.reshape(x, (1, -1)), alpha, dilate_radius, trend_radius, 1
        )
        if centers is not None:
            return float(centers[0]), float(sigmas[0])
    return reference.robust_scale(x, alpha, dilate_radius, trend_radius)


def robust_scale_batch(
    spectra: np.ndarray,
    alpha: float = 5.0,
    dilate_radius: int = 8,
    trend_radius: int = 64,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`robust_scale` of every row of ``spectra`` [N, L]: ``(centers [N], sigmas [N])``."""
    if _kernels_on() and np.ndim(spectra) <= 2:
        centers, sigmas = _robust_scale_rows(
            np.atleast_2d(spectra), alpha, dilate_radius, trend_radius, _threads(threads)
        )
        if centers is not None:
            return centers, sigmas
    return reference.robust_scale_batch(spectra, alpha, dilate_radius, trend_radius)


def standardise(
    spectra: np.ndarray, centers: np.ndarray, sigmas: np.ndarray, padded: int
) -> np.ndarray:
    """``(spectra - centers) / sigmas`` per row, float32 [N, padded] with zero padding on
    the right: the network's input. Kernel: one pass (robust.standardise_rows).
    NumPy: ``reference.standardise``, the same bits."""
    if _kernels_on():
        arr = _floats(np.atleast_2d(spectra))
        if arr is not None and arr.ndim == 2 and padded >= arr.shape[1]:
            z = np.empty((arr.shape[0], padded), dtype=np.float32)
            rows = np.ascontiguousarray(centers, dtype=np.float64).reshape(-1)
            scales = np.ascontiguousarray(sigmas, dtype=np.float64).reshape(-1)
            _robust.standardise_rows(arr, rows, scales, z)
            return z
    return reference.standardise(spectra, centers, sigmas, padded)


def _robust_scale_rows(rows, alpha, dilate_radius, trend_radius, threads):
    arr = _floats(rows)
    if (
        arr is None
        or not _is_real(alpha)
        or not _is_int(dilate_radius)
        or not _is_int(trend_radius)
        or trend_radius < 0
    ):
        return None, None
    _checked(arr, "robust_scale", "spectra")
    return _robust.robust_scale_rows(arr, float(alpha), dilate_radius, trend_radius, threads)


# --------------------------------------------------------------------------- masks


def _mask_rows(mask):
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 0:
        return None, None
    return m.shape, np.ascontiguousarray(m).reshape(-1, m.shape[-1]).view(np.uint8)


def dilate(mask: np.ndarray, radius: int, threads: int | None = None) -> np.ndarray:
    """Binary dilation by ``radius`` points along the last axis; outside the array is False.

    Kernel: O(n) sliding count. SciPy: ``ndimage.binary_dilation(mask, np.ones(2r+1))``.
    """
    if _kernels_on() and _is_int(radius):
        shape, rows = _mask_rows(mask)
        if rows is not None:
            out = _masks.dilate_rows(rows, radius, False, _threads(threads))
            return out.view(bool).reshape(shape)
    return reference.dilate(mask, radius)


def erode(mask: np.ndarray, radius: int, threads: int | None = None) -> np.ndarray:
    """Binary erosion by ``radius`` points, the border counting as True: ``~dilate(~mask)``."""
    if _kernels_on() and _is_int(radius):
        shape, rows = _mask_rows(mask)
        if rows is not None:
            out = _masks.dilate_rows(rows, radius, True, _threads(threads))
            return out.view(bool).reshape(shape)
    return reference.erode(mask, radius)


def dilate_components(mask: np.ndarray, radius: int, relative: float = 0.0) -> np.ndarray:
    """Grow every run of True values of a 1D mask by ``max(radius, ceil(relative * length))``."""
    if (
        _kernels_on()
        and np.ndim(mask) == 1
        and _is_int(radius)
        and radius >= 0
        and _is_real(relative)
    ):
        _, rows = _mask_rows(mask)
        return _masks.dilate_components_rows(rows, radius, float(relative), 1).view(bool)[0]
    return reference.dilate_components(mask, radius, relative)


def smooth(
    x: np.ndarray, window: int, polyorder: int = 2, threads: int | None = None
) -> np.ndarray:
    """Savitzky-Golay smoothing along the last axis, edges extended with the nearest value."""
    if _kernels_on() and _is_int(window) and window > 1 and window % 2 == 1:
        arr = _floats(x)
        if arr is not None and arr.ndim >= 1 and arr.size:
            taps = _savgol_taps(int(window), int(polyorder))
            _checked(arr, "smooth", "x")
            rows = arr.reshape(-1, arr.shape[-1])
            return _masks.smooth_rows(rows, taps, _threads(threads)).reshape(arr.shape)
    return reference.smooth(x, window, polyorder)


def threshold_mask(spectra: np.ndarray, alpha: float) -> np.ndarray:
    """Candidate peak points: ``max_k x_k >= median + alpha * mad_sigma`` of that maximum."""
    if _kernels_on() and np.ndim(spectra) in (1, 2) and isinstance(alpha, numbers.Real):
        arr = _floats(np.atleast_2d(spectra))
        if arr is not None and arr.size:
            _checked(arr, "threshold_mask", "spectra")
            return _masks.threshold_mask(arr, float(alpha)).view(bool)
    return reference.threshold_mask(spectra, alpha)


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
    """Peak mask M and baseline mask B of METHOD 2.3 from aligned rungs [R, L] and their noise."""
    taps = _window_taps(smooth_windows, smooth_polyorder)
    if (
        _kernels_on()
        and taps is not None
        and np.ndim(spectra) in (1, 2)
        and isinstance(alpha, numbers.Real)
        and _is_int(dilate_radius)
        and dilate_radius >= 0
        and _is_real(dilate_relative)
        and _is_int(erode_radius)
    ):
        arr = _floats(np.atleast_2d(spectra))
        sigma = np.ascontiguousarray(np.asarray(noise, dtype=np.float64).reshape(-1))
        if (
            arr is not None
            and arr.size
            and sigma.size == arr.shape[0]
            and np.all(np.isfinite(sigma))
            and np.all(sigma > 0)
        ):
            _checked(arr, "peak_and_baseline_masks", "spectra")
            peak, base = _masks.peak_and_baseline_masks(
                arr,
                sigma,
                float(alpha),
                dilate_radius,
                float(dilate_relative),
                erode_radius,
                *taps,
            )
            return peak.view(bool), base.view(bool)
    return reference.peak_and_baseline_masks(
        spectra,
        noise,
        alpha,
        dilate_radius,
        dilate_relative,
        erode_radius,
        smooth_windows,
        smooth_polyorder,
    )


def _window_taps(windows, polyorder):
    """(taps back to back, their counts) for the kernels, or None for what they do not cover."""
    if not isinstance(windows, (tuple, list)) or not windows or not _is_int(polyorder):
        return None
    if not all(_is_int(w) and (w <= 1 or w % 2 == 1) for w in windows):
        return None
    return _window_taps_cached(tuple(int(w) for w in windows), int(polyorder))


@functools.lru_cache(maxsize=64)
def _window_taps_cached(windows: tuple[int, ...], polyorder: int):
    taps = [_savgol_taps(w, polyorder) for w in windows]
    return np.concatenate(taps), np.array([t.size for t in taps], dtype=np.intp)


# --------------------------------------------------------------------------- alignment


def _line_pair(ref, x, function: str):
    r, v = _floats(ref), _floats(x)
    if r is None or v is None or r.ndim != 1 or r.shape != v.shape[-1:] or r.size == 0:
        return None, None
    if r.dtype != v.dtype:
        r, v = r.astype(np.float64), v.astype(np.float64)
    return _checked(r, function, "ref"), _checked(v, function, "x")


def cross_correlation(ref: np.ndarray, x: np.ndarray, max_lag: int) -> np.ndarray:
    """Circular cross-correlation at lags -max_lag..max_lag of the mean-centred inputs.

    Kernel: direct and lag-blocked, or by FFT for wide lag ranges (cost model).
    """
    if _kernels_on() and _is_int(max_lag) and max_lag >= 0:
        r, v = _line_pair(ref, x, "cross_correlation")
        if r is not None and v.ndim == 1:
            return _align.cross_correlation(r, v, max_lag)
    return reference.cross_correlation(ref, x, max_lag)


def estimate_shift(
    ref: np.ndarray, x: np.ndarray, max_lag: int, smooth_sigma: float = SHIFT_SMOOTH_SIGMA
) -> float:
    """Shift d (points, sub-point) with ``x[i] ~= ref[i - d]``, |d| <= max_lag."""
    if _kernels_on() and np.ndim(x) == 1:
        shifts = _estimate_shifts(ref, np.reshape(x, (1, -1)), max_lag, smooth_sigma, 1)
        if shifts is not None:
            return float(shifts[0])
    return reference.estimate_shift(ref, x, max_lag, smooth_sigma)


def estimate_shifts(
    ref: np.ndarray, spectra: np.ndarray, max_lag: int, threads: int | None = None
) -> np.ndarray:
    """:func:`estimate_shift` of every row of ``spectra`` [R, L] against ``ref`` [L]."""
    if _kernels_on() and np.ndim(spectra) <= 2:
        shifts = _estimate_shifts(
            ref, np.atleast_2d(spectra), max_lag, SHIFT_SMOOTH_SIGMA, _threads(threads)
        )
        if shifts is not None:
            return shifts
    return reference.estimate_shifts(ref, spectra, max_lag)


def _estimate_shifts(ref, rows, max_lag, smooth_sigma, threads):
    if not (_is_int(max_lag) and max_lag >= 0 and _is_real(smooth_sigma)):
        return None
    r, v = _line_pair(ref, rows, "estimate_shift")
    if r is None:
        return None
    return _align.estimate_shifts(
        r, v, max_lag, _gaussian_taps(float(smooth_sigma)), _align.AUTO, threads
    )


def apply_shift(x: np.ndarray, shift: float | np.ndarray, threads: int | None = None) -> np.ndarray:
    """``y[i] = x[i - shift]`` by linear interpolation with circular wrap, along the last axis.

    SciPy, per row: ``ndimage.shift(x, shift, order=1, mode="grid-wrap")``.
    """
    if _kernels_on() and np.ndim(x) in (1, 2):
        arr = _floats(x)
        shifts = np.asarray(shift, dtype=np.float64)
        if (
            arr is not None
            and arr.size
            and (shifts.ndim == 0 or (arr.ndim == 2 and shifts.shape == (arr.shape[0],)))
        ):
            rows = arr.reshape(-1, arr.shape[-1])
            shifts = np.ascontiguousarray(np.broadcast_to(shifts, (rows.shape[0],)))
            _checked(arr, "apply_shift", "x")
            _checked(shifts, "apply_shift", "shift")
            return _align.apply_shifts(rows, shifts, _threads(threads)).reshape(arr.shape)
    return reference.apply_shift(x, shift)


def apply_shift_field(
    x: np.ndarray, shift_field: np.ndarray, threads: int | None = None
) -> np.ndarray:
    """``y[i] = x[i - d(i)]`` for a per-point shift field d [L], linear interpolation, wrap."""
    if _kernels_on() and np.ndim(x) >= 1:
        arr = _floats(x)
        field = np.ascontiguousarray(np.asarray(shift_field, dtype=np.float64))
        if arr is not None and arr.size and field.shape == arr.shape[-1:]:
            _checked(arr, "apply_shift_field", "x")
            _checked(field, "apply_shift_field", "shift_field")
            rows = arr.reshape(-1, arr.shape[-1])
            return _align.apply_shift_field_rows(rows, field, _threads(threads)).reshape(arr.shape)
    return reference.apply_shift_field(x, shift_field)


def local_shift_field(
    ref: np.ndarray,
    x: np.ndarray,
    window: int = 64,
    max_lag: int = 6,
    n_anchors: int = 16,
) -> np.ndarray:
    """Per-point residual shift field d [L] of ``x`` against ``ref`` from anchor windows."""
    if (
        _kernels_on()
        and _is_int(window)
        and window >= 0
        and _is_int(max_lag)
        and max_lag >= 0
        and _is_int(n_anchors)
    ):
        r, v = _line_pair(ref, x, "local_shift_field")
        if r is not None and v.ndim == 1:
            return _align.local_shift_field(
                r.astype(np.float64),
                v,
                window,
                max_lag,
                n_anchors,
                _gaussian_taps(SHIFT_SMOOTH_SIGMA),
            )
    return reference.local_shift_field(ref, x, window, max_lag, n_anchors)


# --------------------------------------------------------------------------- scale and fusion


def ls_scale(
    ref: np.ndarray,
    x: np.ndarray,
    mask: np.ndarray,
    method: str = "deming",
    noise_ref: float = 0.0,
    noise_x: float = 0.0,
) -> float:
    """Amplitude scale s with ``s * x ~= ref`` on the peak mask (METHOD 2.2)."""
    if (
        _kernels_on()
        and method in _rescale.SCALE_METHODS
        and _is_real(noise_ref)
        and _is_real(noise_x)
        and np.ndim(ref) == 1
        and (noise_x == 0 or abs(noise_ref / noise_x) < 1e150)
    ):  # else Python's ** overflows
        r, v = _floats(ref), _floats(x)
        if r is not None and v is not None and r.shape == v.shape:
            m = _mask_bytes(mask, r.shape)
            if m is not None:
                r = _checked(np.ascontiguousarray(r, dtype=np.float64), "ls_scale", "ref")
                v = _checked(np.ascontiguousarray(v, dtype=np.float64), "ls_scale", "x")
                return _rescale.ls_scale(
                    r, v, m, _rescale.SCALE_METHODS[method], float(noise_ref), float(noise_x)
                )
    return reference.ls_scale(ref, x, mask, method, noise_ref, noise_x)


def fusion_weights(
    snr: np.ndarray,
    t_hat: float,
    method: str = "snr",
    gamma: float = 2.0,
    w_max: float | None = None,
) -> np.ndarray:
    """Normalised fusion weights of METHOD 3.1 (they sum to 1), capped at ``w_max``."""
    if _kernels_on() and method in _rescale.WEIGHT_METHODS and isinstance(gamma, numbers.Real):
        values = np.ascontiguousarray(np.asarray(snr, dtype=np.float64).reshape(-1))
        if values.size and isinstance(t_hat, numbers.Real):
            weights = _rescale.fusion_weights(
                values,
                float(t_hat),
                _rescale.WEIGHT_METHODS[method],
                float(gamma),
                w_max is not None,
                float(w_max) if w_max is not None else 0.0,
            )
            if weights is not None:
                return weights
    # the reference computes the rest and raises where the kernel refused
    return reference.fusion_weights(snr, t_hat, method, gamma, w_max)


def fuse(spectra: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of the rungs: ``sum_k w_k x_k / sum_k w_k`` (METHOD 3.1)."""
    if _kernels_on() and np.ndim(spectra) == 2:
        rows = _floats(spectra)
        w = np.ascontiguousarray(np.asarray(weights, dtype=np.float64).reshape(-1))
        if rows is not None and w.size == rows.shape[0] and rows.size:
            rows = _checked(np.ascontiguousarray(rows, dtype=np.float64), "fuse", "spectra")
            return _rescale.fuse(rows, _checked(w, "fuse", "weights"))
    return reference.fuse(spectra, weights)


# --------------------------------------------------------------------------- the ladder chain


def preprocess_ladder(ladder, name: str = "ladder", **options) -> LadderResult:
    """Run METHOD 2.1-2.4 and 3.1 on one ladder [R, L] (rung 0 = lowest SNR, R-1 = highest).

    The whole chain runs in native code (ladder.preprocess_batch); options and results as
    :func:`reference.preprocess_ladder`. Raises the reference's InputError on bad input.
    """
    if not _kernels_on():
        return reference.preprocess_ladder(ladder, name, **options)
    opts = reference.make_options(**options)
    if isinstance(ladder, (list, tuple)) and len({np.shape(rung) for rung in ladder}) > 1:
        reference.validate_ladder(ladder, opts, name)  # raises: rungs of different shapes
    arr = np.asarray(ladder)
    if not _chain_input_ok(arr, 2, opts):
        reference.validate_ladder(arr, opts, name)  # raises what the reference raises
        return reference.preprocess_ladder(ladder, name, **options)
    batch = _run_chain(arr[None], [name], opts, options, threads=1, want_fields=True)
    if batch is None:
        return reference.preprocess_ladder(ladder, name, **options)
    fields = batch.pop("shift_fields")
    result = LadderBatchResult(**batch, params=asdict(opts))[0]
    result.t_hat = float(result.t_hat)
    result.shift_fields = fields[0] if opts.local else None
    return result


def preprocess_ladders(
    batch, name: str = "ladders", threads: int | None = None, **options
) -> LadderBatchResult:
    """:func:`preprocess_ladder` over a batch [N, R, L], the ladders in parallel (``threads``).

    The native chain releases the GIL once for the whole batch; the fields come back
    stacked as :func:`reference.preprocess_ladders` stacks them.
    """
    if not _kernels_on():
        return reference.preprocess_ladders(batch, name, **options)
    arr = np.asarray(batch)
    if arr.ndim != 3:
        raise InputError(f"{name}: expected shape [N, R, L], got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: the batch is empty")
    opts = reference.make_options(**options)
    names = [f"{name}[{i}]" for i in range(arr.shape[0])]
    if not _chain_input_ok(arr, 3, opts):
        reference.validate_ladder(arr[0], opts, names[0])  # raises for every ladder alike
        return reference.preprocess_ladders(batch, name, **options)
    stacked = _run_chain(arr, names, opts, options, _threads(threads), want_fields=False)
    if stacked is None:
        return reference.preprocess_ladders(batch, name, **options)
    stacked.pop("shift_fields")
    return LadderBatchResult(**stacked, params=asdict(opts))


def _chain_input_ok(arr: np.ndarray, ndim: int, opts: PreprocessOptions) -> bool:
    # The checks that reference.validate_ladder makes on the shape alone (all ladders alike).
    return (
        arr.ndim == ndim
        and arr.dtype.kind in "iuf"
        and arr.shape[-2] >= 2
        and arr.shape[-1] > 0
        and arr.shape[-1] >= opts.min_length()
    )


#: The PreprocessOptions the native chain implements: a reference with other options runs
#: on the reference (and tests/test_kernels.py fails until the kernel catches up).
CHAIN_OPTIONS = frozenset(
    {
        "reference",
        "max_lag",
        "local",
        "local_window",
        "local_max_lag",
        "n_anchors",
        "alpha",
        "dilate_radius",
        "dilate_relative",
        "erode_radius",
        "trend_radius",
        "smooth_windows",
        "smooth_polyorder",
        "weights",
        "gamma",
        "w_max",
        "scale_method",
        "snr_percentile",
    }
)


def _chain_options_ok(opts: PreprocessOptions) -> bool:
    # Options the native chain implements; anything else runs on the reference.
    if {f.name for f in dataclass_fields(PreprocessOptions)} != CHAIN_OPTIONS:
        return False
    integers = (
        "max_lag",
        "local_window",
        "local_max_lag",
        "n_anchors",
        "dilate_radius",
        "erode_radius",
        "trend_radius",
        "smooth_polyorder",
    )
    return (
        all(_is_int(getattr(opts, name)) for name in integers)
        and opts.trend_radius >= 0
        and _is_real(opts.dilate_relative)
        and isinstance(opts.alpha, numbers.Real)
        and isinstance(opts.gamma, numbers.Real)
        and isinstance(opts.snr_percentile, numbers.Real)
        and (opts.w_max is None or isinstance(opts.w_max, numbers.Real))
        and opts.scale_method in _rescale.SCALE_METHODS
        and _window_taps(opts.smooth_windows, opts.smooth_polyorder) is not None
    )


def _run_chain(arr, names, opts, options, threads, want_fields):
    """The native chain over arr [N, R, L]: stacked result fields, or None for the reference.

    Errors keep the reference's order and text: ladders are checked (checks.check_ladders)
    before any computes; the chain runs on the ladders before the first invalid one; the
    first ladder with a non-zero status, or else the first invalid one, is handed to the
    reference, which raises its own InputError (or computes a degenerate case the kernel
    defers to it, and its result is kept).
    """
    if not _chain_options_ok(opts):
        return None
    x32 = np.ascontiguousarray(arr, dtype=np.float32)
    offsets = np.zeros(x32.shape[:2])
    middles = np.zeros((*x32.shape[:2], 2))
    flags = _checks.check_ladders(x32, offsets, middles, threads)
    invalid = np.flatnonzero(flags)
    n_valid = int(invalid[0]) if invalid.size else x32.shape[0]
    if n_valid == 0:
        _raise_invalid(arr[0], opts, names[0])
    taps, tap_counts = _window_taps(opts.smooth_windows, opts.smooth_polyorder)
    result = _ladder.preprocess_batch(
        x32[:n_valid],
        offsets[:n_valid],
        middles[:n_valid],
        fused=opts.reference == "fused",
        local=bool(opts.local),
        max_lag=opts.max_lag,
        local_window=opts.local_window,
        local_max_lag=opts.local_max_lag,
        n_anchors=opts.n_anchors,
        alpha=float(opts.alpha),
        dilate_radius=opts.dilate_radius,
        dilate_relative=float(opts.dilate_relative),
        erode_radius=opts.erode_radius,
        trend_radius=opts.trend_radius,
        savgol_taps=taps,
        tap_counts=tap_counts,
        weights_method=_rescale.WEIGHT_METHODS.get(opts.weights, _rescale.UNKNOWN_WEIGHT_METHOD),
        gamma=float(opts.gamma),
        has_cap=opts.w_max is not None,
        cap=float(opts.w_max) if opts.w_max is not None else 0.0,
        scale_method=_rescale.SCALE_METHODS[opts.scale_method],
        percentile=float(opts.snr_percentile),
        shift_taps=_gaussian_taps(SHIFT_SMOOTH_SIGMA),
        want_fields=want_fields,
        threads=threads,
    )
    status = result.pop("status")
    del result["status_rung"], result["status_value"]
    for i in np.flatnonzero(status):
        # The reference raises this ladder's error, or decides the case the kernel deferred.
        _splice(result, i, reference.preprocess_ladder(arr[i], names[i], **options))
    if n_valid < x32.shape[0]:
        _raise_invalid(arr[n_valid], opts, names[n_valid])
    result["offsets"] = offsets
    result["peak_mask"] = result["peak_mask"].view(bool)
    result["base_mask"] = result["base_mask"].view(bool)
    return result


def _splice(result: dict, i: int, ladder: LadderResult) -> None:
    for key, values in result.items():
        if key == "shift_fields":
            if values is not None and ladder.shift_fields is not None:
                values[i] = ladder.shift_fields
        elif key != "offsets":
            values[i] = getattr(ladder, key)


def _raise_invalid(ladder: np.ndarray, opts: PreprocessOptions, name: str) -> None:
    reference.validate_ladder(ladder, opts, name)  # raises the reference's message
    raise InputError(
        f"{name}: invalid once converted to float32, the kernels' input type (a value beyond "
        "the float32 range, or a rung that float32 rounding makes constant or of zero MAD); "
        "set NMRLADDER_KERNELS=reference to process it in float64"
    )
