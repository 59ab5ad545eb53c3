"""Public preprocessing API of the runtime (METHOD 2.1-2.4, 3.1): the compiled kernels of
``nmrladder.kernels`` behind the names and signatures of :mod:`nmrladder.runtime.reference`.

Each function converts its input once (C-contiguous float32 or float64, masks bool), rejects
NaN/Inf with an :class:`InputError` before any kernel runs, and calls the kernel; the result
equals the reference's (masks exactly, floats to rounding). Inputs a kernel does not cover
(other dtypes or shapes, degenerate options) go to the reference unchanged. The functions on
the denoiser's path for every spectrum (robust_scale, robust_scale_batch, standardise) and
the ladder chain (preprocess_ladder(s), runtime/chain.py) count such a fallback with its
reason (runtime/dispatch.py: fallback_counts).

Batched functions take ``threads=None`` (None: every OpenMP thread; results do not depend on
the count). The reference is forced with the environment variable
``NMRLADDER_KERNELS=reference`` (read when this module is imported) or, within a block,
``with use_reference(): ...``.
"""

from __future__ import annotations

import numbers

import numpy as np

from nmrladder.runtime import reference
from nmrladder.runtime.chain import CHAIN_OPTIONS, preprocess_ladder, preprocess_ladders
from nmrladder.runtime.dispatch import (
    KERNELS_BUILT,
    backend,
    fallback_counts,
    floats_refusal,
    kernels_refusal,
    on_reference,
    use_reference,
)
from nmrladder.runtime.dispatch import align as _align
from nmrladder.runtime.dispatch import checked as _checked
from nmrladder.runtime.dispatch import floats as _floats
from nmrladder.runtime.dispatch import gaussian_taps as _gaussian_taps
from nmrladder.runtime.dispatch import is_int as _is_int
from nmrladder.runtime.dispatch import is_real as _is_real
from nmrladder.runtime.dispatch import kernels_on as _kernels_on
from nmrladder.runtime.dispatch import mask_bytes as _mask_bytes
from nmrladder.runtime.dispatch import masks as _masks
from nmrladder.runtime.dispatch import rescale as _rescale
from nmrladder.runtime.dispatch import robust as _robust
from nmrladder.runtime.dispatch import savgol_taps as _savgol_taps
from nmrladder.runtime.dispatch import threads_argument as _threads
from nmrladder.runtime.dispatch import window_taps as _window_taps
from nmrladder.runtime.reference import (
    SHIFT_SMOOTH_SIGMA,
    LadderBatchResult,
    LadderResult,
    PreprocessOptions,
)

__all__ = [
    "CHAIN_OPTIONS",
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
    "fallback_counts",
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
    "scaling_refusal",
    "smooth",
    "standardise",
    "threshold_mask",
    "use_reference",
]


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
    reason = scaling_refusal(x, alpha, dilate_radius, trend_radius, ndim=1)
    if reason is None:
        centers, sigmas = _robust_scale_rows(
            np.reshape(x, (1, -1)), alpha, dilate_radius, trend_radius, 1
        )
        return float(centers[0]), float(sigmas[0])
    return on_reference(
        "robust_scale", reason, reference.robust_scale, x, alpha, dilate_radius, trend_radius
    )


def robust_scale_batch(
    spectra: np.ndarray,
    alpha: float = 5.0,
    dilate_radius: int = 8,
    trend_radius: int = 64,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`robust_scale` of every row of ``spectra`` [N, L]: ``(centers [N], sigmas [N])``."""
    reason = scaling_refusal(spectra, alpha, dilate_radius, trend_radius, ndim=2)
    if reason is None:
        return _robust_scale_rows(
            np.atleast_2d(spectra), alpha, dilate_radius, trend_radius, _threads(threads)
        )
    return on_reference(
        "robust_scale_batch",
        reason,
        reference.robust_scale_batch,
        spectra,
        alpha,
        dilate_radius,
        trend_radius,
    )


def standardise(
    spectra: np.ndarray, centers: np.ndarray, sigmas: np.ndarray, padded: int
) -> np.ndarray:
    """``(spectra - centers) / sigmas`` per row, float32 [N, padded] with zero padding on
    the right: the network's input. Kernel: one pass (robust.standardise_rows).
    NumPy: ``reference.standardise``, the same bits."""
    reason = kernels_refusal() or floats_refusal(spectra)
    if reason is None and np.ndim(spectra) > 2:
        reason = f"shape {np.shape(spectra)}: [N, L] or [L] expected"
    if reason is None and padded < np.shape(spectra)[-1]:
        reason = f"padded length {padded} below the length {np.shape(spectra)[-1]}"
    if reason is None:
        arr = _floats(np.atleast_2d(spectra))
        z = np.empty((arr.shape[0], padded), dtype=np.float32)
        rows = np.ascontiguousarray(centers, dtype=np.float64).reshape(-1)
        scales = np.ascontiguousarray(sigmas, dtype=np.float64).reshape(-1)
        _robust.standardise_rows(arr, rows, scales, z)
        return z
    return on_reference(
        "standardise", reason, reference.standardise, spectra, centers, sigmas, padded
    )


def scaling_refusal(
    spectra, alpha=5.0, dilate_radius=8, trend_radius=64, ndim: int = 2
) -> str | None:
    """Why the compiled robust scaling cannot take ``spectra`` (at most ``ndim`` dimensions;
    exactly one for ``ndim`` 1) with these options; None when it can."""
    reason = kernels_refusal() or floats_refusal(spectra)
    if reason is not None:
        return reason
    dims = np.ndim(spectra)
    if dims > ndim or (ndim == 1 and dims != 1):
        expected = "one spectrum [L]" if ndim == 1 else "[N, L] or [L]"
        return f"shape {np.shape(spectra)}: {expected} expected"
    if not _is_real(alpha):
        return f"alpha={alpha!r} is not a finite number"
    if not (_is_int(dilate_radius) and _is_int(trend_radius) and trend_radius >= 0):
        return f"radii {dilate_radius!r}, {trend_radius!r}: integers, the trend's >= 0"
    return None


def _robust_scale_rows(rows, alpha, dilate_radius, trend_radius, threads):
    arr = _checked(_floats(rows), "robust_scale", "spectra")
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


