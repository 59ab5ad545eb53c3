"""Classical denoisers to compare the network against, with the project's ``.denoise`` API.

Every denoiser here is linear and shift-invariant, preserves constants (its kernel sums to
1) and is therefore indifferent to the normalisation of its input, like the network.

- :class:`SavitzkyGolay` (window, polyorder): ``scipy.signal.savgol_filter``.
- :class:`LineBroadening` (LB, as a FWHM in points): exponential multiplication of the FID,
  ``exp(-pi LB t)``, which is the convolution of the spectrum with a Lorentzian of FWHM LB.
- :class:`MatchedLineBroadening` (a factor): the same with LB = factor x the linewidth
  measured on each input spectrum (the classical matched filter, LB ~ the lines' width).

Each has a classmethod ``tune(val_items)`` that returns an instance whose parameters
maximise the mean error-based SNR gain inside the truth's peak regions on the VALIDATION
items (never the test split), and records the grid it searched in ``.tuning``. Validation
items are the :class:`nmrladder.train.eval_items.EvalItem` of a ladder set (anything with
``noisy``, ``truth`` and ``region`` arrays [L]); a Ladders object, a path or a list of
EvalItem are accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.signal import savgol_filter

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.residual import linewidth as estimate_linewidth
from nmrladder.runtime.residual import lorentzian_broaden
from nmrladder.train import metrics

__all__ = [
    "BASELINES",
    "LineBroadening",
    "MatchedLineBroadening",
    "SavitzkyGolay",
    "estimate_linewidth",
    "lorentzian_broaden",
    "peak_region_gain",
    "tune_baselines",
]


def _rows(x) -> tuple[np.ndarray, bool]:
    """x as float64 [N, L] and whether it came as a single spectrum [L]."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
        raise InputError(f"spectra: expected shape [N, L] or [L] with L > 0, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError("spectra: NaN/Inf values")
    return np.atleast_2d(arr), arr.ndim == 1


def _result(y: np.ndarray, single: bool) -> np.ndarray:
    y = y.astype(np.float32)
    return y[0] if single else y


# --------------------------------------------------------------------------- tuning helpers


def _val_items(val_items) -> list:
    """Validation items from a list of items, a Ladders object or a ladder file."""
    if isinstance(val_items, (list, tuple)):
        items = list(val_items)
    else:
        from nmrladder.train.eval_items import prepare_items

        items = prepare_items(val_items, "validation")
    if not items:
        raise InputError("tune: the validation set is empty")
    return items


def _groups(items: Sequence) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(noisy, truth, region) stacked per spectrum length, so a denoiser runs once per group."""
    by_length: dict[int, list] = {}
    for item in items:
        by_length.setdefault(np.asarray(item.noisy).size, []).append(item)
    return [
        (
            np.stack([np.asarray(it.noisy, dtype=np.float64) for it in group]),
            np.stack([np.asarray(it.truth, dtype=np.float64) for it in group]),
            np.stack([np.asarray(it.region, dtype=bool) for it in group]),
        )
        for group in by_length.values()
    ]


def _mean_gain(denoise, groups) -> float:
    """Mean peak-region gain (dB) of ``denoise(group_index, noisy [n, L])`` over the groups."""
    gains = []
    for g, (noisy, truth, region) in enumerate(groups):
        out = np.atleast_2d(denoise(g, noisy))
        for z, x, t, p in zip(out, noisy, truth, region, strict=True):
            if p.any():
                gains.append(metrics.error_snr_db(z, t, p) - metrics.error_snr_db(x, t, p))
    return float(np.mean(gains)) if gains else float("nan")


def peak_region_gain(denoiser, items: Sequence) -> float:
    """Mean over ``items`` of the error-based SNR gain (dB) inside the truth's peak regions.

    ``gain = error_snr_db(denoise(noisy), truth, region) - error_snr_db(noisy, truth, region)``;
    items without a peak region are skipped.
    """
    return _mean_gain(lambda _, rows: denoiser.denoise(rows), _groups(list(items)))


def _grid_search(make_denoise, grid: Iterable[dict], items) -> tuple[dict, dict]:
    """Score every parameter set of ``grid`` on the validation items: the best and a record.

    ``make_denoise(params)`` returns a function ``(group_index, noisy [n, L]) -> outputs``.
    """
    items = _val_items(items)
    groups = _groups(items)
    table = [
        {"params": params, "score": _mean_gain(make_denoise(params), groups)} for params in grid
    ]
    scored = [row for row in table if np.isfinite(row["score"])]
    if not scored:
        raise InputError("tune: no validation item has a peak region to score on")
    best = max(scored, key=lambda row: row["score"])
    tuning = {
        "criterion": "mean error-based SNR gain (dB) inside the truth's peak regions",
        "n_val": len(items),
        "best": best["params"],
        "score": best["score"],
        "grid": table,
    }
    return best["params"], tuning


def _plain_search(cls, grid: Iterable[dict], items):
    """A tuned instance of ``cls`` whose parameters are the best of ``grid``."""
    params, tuning = _grid_search(lambda p: lambda _, rows: cls(**p).denoise(rows), grid, items)
    tuned = cls(**params)
    tuned.tuning = tuning
    return tuned


# --------------------------------------------------------------------------- Savitzky-Golay


class SavitzkyGolay:
    """Savitzky-Golay smoothing: a least-squares polynomial of order ``polyorder`` over a
    sliding window of ``window`` points (odd), ``scipy.signal.savgol_filter``, edges fitted
    by the polynomial of the first / last window (``mode="interp"``)."""

    name = "Savitzky-Golay"
    WINDOWS = (5, 7, 9, 11, 15, 21, 27, 35, 45, 61)
    POLYORDERS = (2, 3, 4, 6)

    def __init__(self, window: int = 11, polyorder: int = 3):
        if window < 3 or window % 2 == 0 or not 0 <= polyorder < window:
            raise InputError(
                f"Savitzky-Golay: window={window} must be odd and >= 3, "
                f"polyorder={polyorder} in [0, window)"
            )
        self.window = int(window)
        self.polyorder = int(polyorder)
        self.tuning: dict | None = None

    def params(self) -> dict:
        return {"window": self.window, "polyorder": self.polyorder}

    def denoise(self, x: np.ndarray) -> np.ndarray:
        """Smoothed spectra, same shape as x ([N, L] or [L]), float32."""
        rows, single = _rows(x)
        if rows.shape[1] < self.window:
            raise InputError(f"Savitzky-Golay: length {rows.shape[1]} < window {self.window}")
        return _result(savgol_filter(rows, self.window, self.polyorder, axis=-1), single)

    @classmethod
    def tune(cls, val_items, windows=WINDOWS, polyorders=POLYORDERS) -> SavitzkyGolay:
        """The window and order that maximise the peak-region gain on the validation items."""
        grid = [{"window": w, "polyorder": p} for w in windows for p in polyorders if p < w]
        return _plain_search(cls, grid, val_items)

    def __repr__(self) -> str:
        return f"SavitzkyGolay(window={self.window}, polyorder={self.polyorder})"


# --------------------------------------------------------------------------- line broadening


class LineBroadening:
    """Exponential line broadening with a fixed LB, given as a FWHM in points of the spectrum
    (``LB_Hz = lb_points * SW_Hz / L``; see :func:`lorentzian_broaden`)."""

    name = "line broadening"
    # 0 (no broadening) and 0.1 .. 32 points: lines of a few to tens of points, and a
    # criterion that tall lines (a solvent) can make intolerant of any broadening
    GRID = (0.0, 0.1, *(float(v) for v in 2.0 ** np.arange(-2.0, 5.01, 0.5)))

    def __init__(self, lb_points: float = 2.0):
        if not lb_points >= 0:
            raise InputError(f"line broadening: lb_points={lb_points} must be >= 0")
        self.lb_points = float(lb_points)
        self.tuning: dict | None = None

    @classmethod
    def from_hz(cls, lb_hz: float, sw_hz: float, length: int) -> LineBroadening:
        """LB given in Hz, for spectra of ``length`` points over ``sw_hz``."""
        return cls(lb_hz * length / sw_hz)

    def params(self) -> dict:
        return {"lb_points": self.lb_points}

    def denoise(self, x: np.ndarray) -> np.ndarray:
        """Broadened spectra, same shape as x ([N, L] or [L]), float32."""
        rows, single = _rows(x)
        return _result(lorentzian_broaden(rows, self.lb_points), single)

    @classmethod
    def tune(cls, val_items, grid=GRID) -> LineBroadening:
        """The LB (points) that maximises the peak-region gain on the validation items."""
        return _plain_search(cls, [{"lb_points": v} for v in grid], val_items)

    def __repr__(self) -> str:
        return f"LineBroadening(lb_points={self.lb_points:g})"


class MatchedLineBroadening:
    """Exponential line broadening matched to each spectrum: LB = ``factor`` x the linewidth
    measured on the input (:func:`estimate_linewidth`; ``fallback_points`` where no peak
    stands out). ``factor`` 1 is the classical matched filter for Lorentzian lines."""

    name = "matched line broadening"
    GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)

    def __init__(self, factor: float = 1.0, fallback_points: float = 2.0):
        if not factor >= 0 or not fallback_points >= 0:
            raise InputError("matched line broadening: factor and fallback_points must be >= 0")
        self.factor = float(factor)
        self.fallback_points = float(fallback_points)
        self.tuning: dict | None = None

    def params(self) -> dict:
        return {"factor": self.factor}

    def lb_points(self, x: np.ndarray) -> np.ndarray:
        """The LB (points) used for every row of x [N, L]."""
        widths = np.array([estimate_linewidth(row) for row in np.atleast_2d(x)])
        return self.factor * np.where(np.isfinite(widths), widths, self.fallback_points)

    def denoise(self, x: np.ndarray) -> np.ndarray:
        """Broadened spectra, same shape as x ([N, L] or [L]), float32."""
        rows, single = _rows(x)
        return _result(lorentzian_broaden(rows, self.lb_points(rows)), single)

    @classmethod
    def tune(cls, val_items, grid=GRID) -> MatchedLineBroadening:
        """The factor that maximises the peak-region gain on the validation items."""
        items = _val_items(val_items)
        # The linewidths do not depend on the factor: measure them once for the whole grid.
        unit = cls(1.0)
        widths = [unit.lb_points(noisy) for noisy, _, _ in _groups(items)]
        params, tuning = _grid_search(
            lambda p: lambda g, rows: lorentzian_broaden(rows, p["factor"] * widths[g]),
            [{"factor": v} for v in grid],
            items,
        )
        tuned = cls(**params)
        tuned.tuning = tuning
        return tuned

    def __repr__(self) -> str:
        return f"MatchedLineBroadening(factor={self.factor:g})"


#: The baselines the evaluation tunes and reports, by display name.
BASELINES = {
    "Savitzky-Golay": SavitzkyGolay,
    "line broadening": LineBroadening,
    "matched line broadening": MatchedLineBroadening,
}


def tune_baselines(val_items, names: Iterable[str] | None = None) -> dict:
    """Every baseline (or those named) tuned on the validation items: name -> denoiser."""
    items = _val_items(val_items)
    chosen = list(BASELINES) if names is None else list(names)
    unknown = sorted(set(chosen) - set(BASELINES))
    if unknown:
        raise InputError(f"unknown baseline(s) {unknown}; known: {sorted(BASELINES)}")
    return {name: BASELINES[name].tune(items) for name in chosen}
