"""The strength dial: how much of what the network removed the output gives back.

A strength S in [0, 1] walks from the input (S = 0, bit for bit) to the network's output
(S = 1, bit for bit) along the residual step of runtime/residual.py, made continuous:

    y_S = y_r + LB_F(x - y_r),               F = 0.5 S / (1 - S),          for S <= 1/2
    y_S = y + a (y_r - y + LB_F(x - y_r)),   a = 2 (1 - S),                for S >= 1/2

x: the input; y: the network's output; y_r: y with its lines' amplitudes re-fitted to x
(residual.refit_amplitudes); LB_F: exponential line broadening by F x the output's linewidth.
Up to S = 1/2 the removed part comes back broadened, the broadening growing with S (none at
0: all of x - y_r comes back, i.e. x); S = 1/2 is the validated residual step
(``residual_lb=0.5``, the same bits), and ``residual_lb=F`` for F <= 0.5 is the point
S = F / (F + 0.5) (:func:`strength_of_factor`; on a spectrum whose output has no line the
residual step broadens by a fixed 2 points, the dial by 4 F). Above 1/2 the whole correction
(re-fit and broadened residual) fades linearly out, to the network's output at S = 1, rather
than being broadened further: an ever wider Lorentzian would leave the removed part's mean
behind, a jump at S = 1. Every step is linear in x - y_r once y is given, so the path is
continuous in S.

``strength="auto"`` (:func:`auto_strength`) sets S per region, with no truth, by testing
whether what would be removed at each strength is indistinguishable from noise:

- regions: the cores of the output's lines (where it stands CORE_LEVEL input noise sigmas above
  the baseline, widened by CORE_RADIUS points) and wherever the removed part x - y holds a
  line-shaped structure (below);
- the variance test: the mean square of the removed part over a region of n points, against
  its robust (MAD) noise level over the whole spectrum, must stay below 1 + VARIANCE_Z
  sqrt(2 / n) (the spread of a chi-square mean of n points);
- the matched filter: the removed part convolved with a Lorentzian of the output's own
  linewidth, in units of its MAD over the spectrum (the filtered noise's sigma, whatever the
  noise's colour), must stay below DETECT_SIGMAS inside the region;
- each region gets the largest strength of AUTO_LEVELS whose removal passes both (0, the
  input, always does). The rest of a spectrum whose output has a line (SUPPORT_HIGH) keeps
  AUTO_CEILING, the residual step, which gives back the weak lines the network removed below
  any test's reach (the best fixed setting inside the peak regions, at the price of broadened
  noise on the baseline). A spectrum whose output has no line keeps strength 1 outside its
  regions, whose first test is then at strength 1: the removal of pure noise is the noise, and
  its output stays flat.

What a spectrum went through is summed up in a :class:`RemovalReport`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.residual import (
    DEFAULT_FACTOR,
    FALLBACK_POINTS,
    FREE_LINE,
    linewidth,
    lorentzian_broaden,
    refit_amplitudes,
)

#: ``strength="auto"``'s strength where the removal passes as noise near the output's lines:
#: the residual step, the best fixed setting inside the peak regions on validation ladders.
AUTO_CEILING = 0.5
#: The strengths auto chooses among, from the ceiling down: each halves the broadening
#: (F = 0.5, 0.25, 0.125, 0.0625), then the input itself.
AUTO_LEVELS = (AUTO_CEILING, 1 / 3, 0.2, 1 / 9, 0.0)
#: Line cores of the output: this many input noise sigmas above the baseline level ...
CORE_LEVEL = 1.0
#: ... widened by this many points (the line's flanks, where a distorted line errs too).
CORE_RADIUS = 3
#: A spectrum has a line where its output stands this many input noise sigmas above the
#: baseline level: the network's output on pure noise keeps its bumps below it.
SUPPORT_HIGH = 3.0
#: A line-shaped structure in the removed part: the matched filter at this many of its sigmas.
DETECT_SIGMAS = 4.5
#: A detection is tested as a region this many output linewidths either side.
DETECT_REACH = 2.0
#: The variance test's z-score (a region of n points fails above 1 + Z sqrt(2 / n)).
VARIANCE_Z = 3.0
#: Recorded with every output a strength setting made (the batch job's manifest, beside the
#: setting): a resume redoes outputs an earlier version of the dial or of auto made.
STRENGTH_STEP = "dial+auto/1"
#: The noise levels (MAD) of the removed part and its matched filter are read off every
#: NOISE_STRIDE-th point.
NOISE_STRIDE = 4
#: The report flags a spectrum whose network removed a structure this strong (matched-filter
#: sigmas): on pure noise the largest of the filtered removal's 16384 points stays well below.
FLAG_SIGMAS = 6.0


def checked_strength(strength, name: str = "strength") -> float | str | None:
    """``strength`` as a float in [0, 1], the word "auto", or None; InputError naming it
    otherwise (a string that reads as a number counts as that number)."""
    if strength is None:
        return None
    problem = f"{name}: expected a number in [0, 1] or 'auto', got {strength!r}"
    if isinstance(strength, str) and strength.strip().lower() == "auto":
        return "auto"
    if isinstance(strength, bool):
        raise InputError(problem)
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise InputError(problem) from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(problem)
    return value


def dial(strength: float) -> tuple[float, float]:
    """(broadening factor F, fade a) of a strength in [0, 1) (module docstring)."""
    s = float(strength)
    return DEFAULT_FACTOR * s / (1.0 - s), min(1.0, 2.0 * (1.0 - s))


def strength_of_factor(factor: float) -> float:
    """The strength whose path point is the residual step with factor ``factor`` <= 0.5."""
    return float(factor) / (float(factor) + DEFAULT_FACTOR)


@dataclass(frozen=True)
class RemovalReport:
    """What one spectrum's output removed from its input, and the strength it got.

    strength: the fixed strength, or under auto the lowest any region got; strength_mean:
    the mean over the points; structure_sigma: the largest line-shaped structure in what the
    network removed (x - y), in sigmas of the matched filter (a Lorentzian of the output's
    linewidth) over noise; structure_height: its least-squares height in input noise sigmas;
    structure_index / structure_ppm: where (ppm NaN without an axis); remaining_sigma: the same
    test on what the delivered output removed; flagged: structure_sigma >= FLAG_SIGMAS;
    regions_restored: regions whose strength auto lowered below its ceiling (0 for a fixed
    strength); linewidth: the output's linewidth, points (the filter's width).
    """

    strength: float
    strength_mean: float
    structure_sigma: float
    structure_height: float
    structure_index: int
    structure_ppm: float
    remaining_sigma: float
    flagged: bool
    regions_restored: int
    linewidth: float

    def as_dict(self) -> dict:
        """Plain floats, ints and bools (a manifest line, a JSON report)."""
        return {
            "strength": round(self.strength, 4),
            "strength_mean": round(self.strength_mean, 4),
            "structure_sigma": round(self.structure_sigma, 2),
            "structure_height": round(self.structure_height, 2),
            "structure_index": int(self.structure_index),
            "structure_ppm": None if math.isnan(self.structure_ppm) else
            round(self.structure_ppm, 4),
            "remaining_sigma": round(self.remaining_sigma, 2),
            "flagged": bool(self.flagged),
            "regions_restored": int(self.regions_restored),
            "linewidth": round(self.linewidth, 2),
        }


class Removal:
    """What the network removed from a batch, prepared once for the dial, the tests and the
    report: spectra x and outputs y ([N, L], same units), the inputs' baseline levels and
    noise sigmas ``centers``/``sigmas`` [N]."""

    def __init__(self, x: np.ndarray, y: np.ndarray, centers: np.ndarray, sigmas: np.ndarray):
        self.x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        self.y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if self.x.shape != self.y.shape:
            raise InputError(f"strength: spectra {self.x.shape} and outputs {self.y.shape} differ")
        self.centers = np.ravel(np.asarray(centers, dtype=np.float64))
        self.sigmas = np.ravel(np.asarray(sigmas, dtype=np.float64))
        self.refit = refit_amplitudes(self.x, self.y, self.centers, self.sigmas)
        widths = np.array([
            linewidth(out, min_prominence=FREE_LINE, scale=(center, sigma))
            for out, center, sigma in zip(self.refit, self.centers, self.sigmas, strict=True)
        ])
        # Without a line the width that makes the residual step's fixed LB at its factor.
        self.widths = np.where(np.isfinite(widths), widths, FALLBACK_POINTS / DEFAULT_FACTOR)

    @property
    def length(self) -> int:
        return self.x.shape[-1]

    def output(self, strength: float) -> np.ndarray:
        """The dial's output at one strength, float64 [N, L] (module docstring)."""
        if strength <= 0.0:
            return self.x.copy()
        if strength >= 1.0:
            return self.y.copy()
        factor, fade = dial(strength)
        broadened = lorentzian_broaden(self.x - self.refit, factor * self.widths)
        if fade >= 1.0:
            return self.refit + broadened  # the residual step's own sum: the same bits
        return self.y + fade * ((self.refit - self.y) + broadened)

    def _exponent(self) -> np.ndarray:
        """-pi w m / L per row (float32 [N, L // 2 + 1]): exp(F x it) is LB by F x the row's
        linewidth w (residual.lorentzian_broaden), exp(it) the matched filter."""
        m = np.arange(self.length // 2 + 1, dtype=np.float32)
        scale = (-np.pi / self.length) * self.widths.astype(np.float32)
        return scale[:, None].astype(np.float32) * m

    def filtered(self, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(matched filter of ``removed`` [N, L] in its own sigmas, its unit: the filtered
        noise's sigma): the convolution with an area-1 Lorentzian of the output's linewidth,
        over 1.4826 MAD of the result."""
        spectrum = sfft.rfft(np.asarray(removed, dtype=np.float32), axis=-1)
        return self._normalised(spectrum * np.exp(self._exponent()))

    def _normalised(self, spectrum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = sfft.irfft(spectrum, n=self.length, axis=-1)
        unit = _noise(t)
        return t / unit[:, None].astype(np.float32), unit

    def report(self, delivered: np.ndarray, strength_map: np.ndarray, ppm=None,
               removed: tuple[np.ndarray, np.ndarray] | None = None,
               remaining_t: np.ndarray | None = None,
               restored: np.ndarray | None = None) -> list[RemovalReport]:
        """One :class:`RemovalReport` per row for the ``delivered`` outputs [N, L] made with
        ``strength_map`` [N, L]; ``removed`` (:meth:`filtered` of x - y) and ``remaining_t``
        (of x - delivered): the matched filters when the caller has them."""
        removed_t, unit = self.filtered(self.x - self.y) if removed is None else removed
        if remaining_t is None:
            remaining_t, _ = self.filtered(self.x - delivered)
        axis = _ppm_rows(ppm, self.x.shape)
        at = np.argmax(np.abs(removed_t), axis=-1)
        rows = np.arange(self.x.shape[0])
        peak = removed_t[rows, at].astype(np.float64)
        # An area-1 Lorentzian matched to a line of height A gives A / 2 at its top.
        heights = 2.0 * peak * unit / self.sigmas
        restored = np.zeros(len(rows), dtype=int) if restored is None else restored
        reports = []
        for i in rows:
            sigma = float(abs(peak[i]))
            reports.append(RemovalReport(
                strength=float(strength_map[i].min()),
                strength_mean=float(strength_map[i].mean()),
                structure_sigma=sigma,
                structure_height=float(heights[i]),
                structure_index=int(at[i]),
                structure_ppm=float("nan") if axis is None else float(axis[i][at[i]]),
                remaining_sigma=float(np.abs(remaining_t[i]).max()),
                flagged=sigma >= FLAG_SIGMAS,
                regions_restored=int(restored[i]),
                linewidth=float(self.widths[i]),
            ))
        return reports


def _noise(rows: np.ndarray) -> np.ndarray:
    """1.4826 MAD of each row [N, L] from every NOISE_STRIDE-th point (the MAD kernel, one
    thread): a stationary noise has the same MAD on a subsample, at a fraction of the cost.
    Never 0 (a row of zeros gets the smallest positive float)."""
    from nmrladder.runtime.preprocess import mad_sigma_batch

    sample = np.ascontiguousarray(rows[:, ::NOISE_STRIDE])
    noise = mad_sigma_batch(sample, threads=1).astype(np.float64)
    return np.where(noise > 0, noise, np.finfo(np.float32).tiny)


def _ppm_rows(ppm, shape) -> np.ndarray | None:
    if ppm is None:
        return None
    axis = np.asarray(ppm, dtype=np.float64)
    if axis.ndim == 1:
        axis = np.broadcast_to(axis, shape)
    if axis.shape != shape:
        raise InputError(f"ppm: expected shape [L] or {list(shape)}, got {list(np.shape(ppm))}")
    return axis


def _runs(mask: np.ndarray):
    """Runs of equal values in each row of ``mask`` [N, L]: (starts into the flattened array,
    lengths, values), a run never crossing rows."""
    flat = np.ascontiguousarray(mask).reshape(-1)
    change = np.empty(flat.size, dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[:: mask.shape[-1]] = True
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, flat.size))
    return starts, lengths, flat[starts]


def _has_lines(level: np.ndarray) -> np.ndarray:
    """The rows [N] whose output has a line: a point SUPPORT_HIGH input noise sigmas above the
    baseline (``level`` [N, L]: the output in those units)."""
    return (level >= SUPPORT_HIGH).any(axis=-1)


def _regions(level: np.ndarray, detected: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The regions auto tests: the output's line cores (``level`` as in :func:`_support`)
    and DETECT_REACH linewidths (``widths`` [N]) around every ``detected`` point."""
    from nmrladder.runtime.preprocess import dilate

    regions = dilate(level > CORE_LEVEL, CORE_RADIUS, threads=1)
    reach = np.ceil(DETECT_REACH * widths).astype(int)
    for row in np.flatnonzero(detected.any(axis=-1)):
        regions[row] |= dilate(detected[row : row + 1], int(reach[row]), threads=1)[0]
    return regions


def fixed_strength(removal: Removal, strength: float, report: bool = False, ppm=None):
    """The dial's output at one strength (float32 [N, L]) and, when asked, the reports."""
    out = removal.output(strength)
    if not report:
        return out.astype(np.float32), None
    strength_map = np.full(out.shape, float(strength))
    return out.astype(np.float32), removal.report(out, strength_map, ppm)


def auto_strength(removal: Removal, report: bool = False, ppm=None):
    """``strength="auto"``: each region the largest of AUTO_LEVELS whose removal passes the
    variance and matched-filter tests (module docstring). Returns (float32 [N, L], the
    strength map [N, L], reports or None)."""
    x, y, length = removal.x, removal.y, removal.length
    level = (y - removal.centers[:, None]) / removal.sigmas[:, None]
    removed_t, unit = removal.filtered(x - y)
    regions = _regions(level, np.abs(removed_t) > DETECT_SIGMAS, removal.widths)
    lines = _has_lines(level)

    strengths = np.array((1.0, *AUTO_LEVELS))
    # Each point's index into strengths: 1 (the ceiling) in a spectrum with lines, else 0
    # (strength 1, the network's output); the tested regions get theirs below, the first
    # level they try being their spectrum's.
    index = np.repeat(lines.astype(np.intp)[:, None], length, axis=1)
    starts, lengths, values = _runs(regions)
    rows = starts // length
    open_ = values & ~lines[rows]  # regions not yet given a strength, at this level
    later = values & lines[rows]  # regions that start at the ceiling
    bound = 1.0 + VARIANCE_Z * np.sqrt(2.0 / lengths)

    def passing(removed, t, t_unit) -> np.ndarray:
        power = np.add.reduceat((removed * removed).reshape(-1), starts) / lengths
        top = np.maximum.reduceat(np.abs(t).reshape(-1), starts)
        return (power <= bound * _noise(removed)[rows] ** 2) & (top <= DETECT_SIGMAS * t_unit)

    out = y.copy()
    if open_.any():  # regions of spectra without lines try strength 1 first
        removed = (x - y).astype(np.float32)
        open_ &= ~passing(removed, removed_t, 1.0)
    open_ |= later
    # The statistics in float32 (the output is float32): the removed part is noise-sized.
    rr = (x - removal.refit).astype(np.float32)
    residual = sfft.rfft(rr, axis=-1)
    exponent = removal._exponent()
    kernel = np.exp(exponent)
    for j, strength in enumerate(AUTO_LEVELS, start=1):
        if strength <= 0.0:
            taken = open_.copy()
        else:
            window = np.exp(np.float32(dial(strength)[0]) * exponent)
            broadened = sfft.irfft(residual * window, n=length, axis=-1)
            t = sfft.irfft(residual * ((1.0 - window) * kernel), n=length, axis=-1)
            taken = open_ & passing(rr - broadened, t, _noise(t)[rows])
        open_ &= ~taken
        chosen = np.repeat(taken, lengths).reshape(x.shape)
        index[chosen] = j
        fill = chosen | ((index == 1) & ~regions) if j == 1 else chosen
        out[fill] = x[fill] if strength <= 0.0 else (removal.refit + broadened)[fill]
        if not open_.any():
            break
    strength_map = strengths[index]
    if not report:
        return out.astype(np.float32), strength_map, None
    restored = np.bincount(rows[values], weights=(index.reshape(-1)[starts[values]] > 1),
                           minlength=x.shape[0]).astype(int)
    reports = removal.report(out, strength_map, ppm, (removed_t, unit), None, restored)
    return out.astype(np.float32), strength_map, reports


__all__ = [
    "AUTO_CEILING",
    "AUTO_LEVELS",
    "FLAG_SIGMAS",
    "Removal",
    "RemovalReport",
    "STRENGTH_STEP",
    "auto_strength",
    "checked_strength",
    "dial",
    "fixed_strength",
    "strength_of_factor",
]
