"""Measures of a real 1D spectrum that the realism check compares between real and simulated
data (scripts/realism.py): line widths in points, noise autocorrelation, baseline roll and
the residual phase error of the tallest peak. NumPy and SciPy only.

Every measure takes the real part of a phased spectrum on its own grid. The imaginary part
is rebuilt from the real part (the FID of a spectrum zero-filled at least twice is causal,
so its real part fixes its imaginary part: Kramers-Kronig, Bruker's ``ht``); this treats
real-only vendor spectra and simulated truths like complex ones, and also gives the
band-limited interpolation that widths and phases are read on.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, optimize, signal

__all__ = [
    "analytic",
    "baseline_curve",
    "baseline_range",
    "measure_spectrum",
    "noise_autocorr",
    "noise_sd",
    "peak_phase_deg",
    "peak_widths",
    "resample",
]

#: Points per segment of the noise measures (a fixed length, so that the small bias of the
#: detrending is the same at every spectrum length).
NOISE_SEGMENT = 512
#: Segments of the baseline estimate per spectrum.
BASELINE_SEGMENTS = 64
#: Band-limited upsampling factor of the grid that widths and phases are read on.
UPSAMPLE = 8
#: A "peak" whose fitted phase is further than this from absorption is no line (a lobe of
#: the truncation ringing of a taller line, two unresolved lines): it is not measured.
MAX_PHASE_DEG = 60.0


def _causal_fid(x: np.ndarray) -> np.ndarray:
    """The causal FID (first half of the time domain) whose spectrum has real part ``x``."""
    t = np.fft.ifft(np.asarray(x, dtype=np.float64))
    half = t.size // 2
    g = np.zeros(half + 1, dtype=np.complex128)
    g[0] = t[0]
    g[1:half] = 2.0 * t[1:half]
    g[half] = t[half]
    return g


def analytic(x: np.ndarray, length: int | None = None) -> np.ndarray:
    """Complex spectrum of ``length`` points (default: ``x.size``) over the same width whose
    real part is ``x`` Fourier-resampled and whose imaginary part is its Hilbert transform.

    Point ``i`` of ``x`` sits at ``i * length / x.size`` of the result (the centre stays at
    the centre). Fewer points truncate the FID, more points zero-fill it.
    """
    x = np.asarray(x, dtype=np.float64)
    length = x.size if length is None else int(length)
    if x.ndim != 1 or x.size < 8 or x.size % 2 or length < 8 or length % 2:
        raise ValueError(f"spectrum: need an even length >= 8, got {x.shape} -> {length}")
    g = _causal_fid(x)
    if length < x.size:  # truncate: the new last term stands for both halves, once
        g = g[: length // 2 + 1].copy()
        g[-1] *= 0.5
    return np.fft.fft(g, length)


def resample(x: np.ndarray, length: int) -> np.ndarray:
    """Real spectrum ``x`` Fourier-resampled to ``length`` points over the same width."""
    return analytic(x, length).real


def _segments(n: int, seg: int, central: float) -> list[slice]:
    lo, hi = int(n * (1 - central) / 2), int(n * (1 + central) / 2)
    count = (hi - lo) // seg
    return [slice(lo + k * seg, lo + (k + 1) * seg) for k in range(count)]


def _quiet_segments(x: np.ndarray, factor: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Linearly detrended segments of the central 80 %, and their standard deviations; the
    quiet ones are those with sd <= factor x the 25th percentile of all."""
    x = np.asarray(x, dtype=np.float64)
    seg = min(NOISE_SEGMENT, max(16, x.size // 32))
    u = np.arange(seg) - (seg - 1) / 2
    parts = []
    for s in _segments(x.size, seg, 0.8):
        y = x[s] - x[s].mean()
        parts.append(y - u * (u @ y) / (u @ u))
    sds = np.array([p.std() for p in parts])
    quiet = sds <= factor * np.percentile(sds, 25)
    return [p for p, q in zip(parts, quiet, strict=True) if q], sds[quiet]


def noise_sd(x: np.ndarray) -> float:
    """Noise standard deviation: median sd of the quiet (signal-free) segments."""
    _, sds = _quiet_segments(x, 2.0)
    return float(np.median(sds))


def noise_autocorr(x: np.ndarray, lags: tuple[int, ...] = (1, 2)) -> tuple[float, ...]:
    """Autocorrelation of the noise at ``lags``, pooled over the quietest segments (sd within
    1.2 x the 25th percentile, so that weak peaks and baseline bumps stay out)."""
    parts, _ = _quiet_segments(x, 1.2)
    if len(parts) < 2:
        return tuple(math.nan for _ in lags)
    power = sum(float(p @ p) for p in parts)
    return tuple(sum(float(p[:-k] @ p[k:]) for p in parts) / power for k in lags)


def baseline_curve(x: np.ndarray, sigma: float, floor: float = 0.002) -> np.ndarray:
    """Baseline of a real spectrum: medians over wide segments of the points that are not
    peaks, interpolated.

    Peaks are the points further than ``max(5 sigma, floor x the tallest)`` from a first,
    all-point estimate, widened by a few points; the medians are taken again without them.
    Segments that are mostly peaks are skipped.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    seg = n // BASELINE_SEGMENTS
    centres = (np.arange(BASELINE_SEGMENTS) + 0.5) * seg
    blocks = x[: seg * BASELINE_SEGMENTS].reshape(BASELINE_SEGMENTS, seg)
    curve = np.interp(np.arange(n), centres, np.median(blocks, axis=1))
    for _ in range(2):
        dev = np.abs(x - curve)
        threshold = max(5.0 * sigma, floor * float(np.max(x - curve)))
        peak = ndimage.binary_dilation(dev > threshold, iterations=max(2, n // 2048))
        keep = ~peak[: seg * BASELINE_SEGMENTS].reshape(BASELINE_SEGMENTS, seg)
        good = keep.mean(axis=1) >= 0.25
        if good.sum() < 4:
            break
        medians = np.array([np.median(b[k]) for b, k, g in zip(blocks, keep, good, strict=True)
                            if g])
        curve = np.interp(np.arange(n), centres[good], medians)
    return curve


def _extent(y: np.ndarray, apex: int, step: int, tolerance: float) -> tuple[float, bool]:
    """Where the line at ``apex`` falls to half height going by ``step`` (fractional index),
    and whether it gets there without rising again by more than ``tolerance`` (an
    overlapping neighbour; then the position of the valley is returned)."""
    half = y[apex] / 2
    i, low_at = apex, apex
    while 0 <= i + step < y.size and y[i] > half:
        i += step
        if y[i] < y[low_at]:
            low_at = i
        elif y[i] > y[low_at] + tolerance:
            return float(low_at), False
    if y[i] > half:
        return float(i), False
    prev = i - step
    return prev + step * (y[prev] - half) / (y[prev] - y[i]), True


def _fine(x: np.ndarray, baseline: np.ndarray | None) -> np.ndarray:
    """Complex spectrum of ``x`` less its baseline, band-limited, ``UPSAMPLE`` x finer."""
    x = np.asarray(x, dtype=np.float64)
    if baseline is not None:
        x = x - baseline
    return analytic(x, x.size * UPSAMPLE)


def _lines(z: np.ndarray, sigma: float, n: int, floor: float, central: float,
           raw: np.ndarray | None = None, base: np.ndarray | None = None) -> list[dict]:
    """The n tallest isolated lines of the fine baseline-free spectrum ``z``; their phases
    are read on ``raw`` (the same before the baseline was taken off; default ``z``) less
    the baseline ``base`` (fine grid) under each."""
    y = z.real
    raw = z if raw is None else raw
    m = y.size // UPSAMPLE
    lo, hi = int(m * (1 - central) / 2) * UPSAMPLE, int(m * (1 + central) / 2) * UPSAMPLE
    threshold = max(20.0 * sigma, floor * float(y[lo:hi].max()))
    apexes = signal.find_peaks(y[lo:hi], height=threshold)[0] + lo
    out, taken = [], []
    for apex in apexes[np.argsort(y[apexes])[::-1]]:
        if any(lo_ <= apex <= hi_ for lo_, hi_ in taken):
            continue  # a second maximum on the top of a line already measured
        tolerance = max(4.0 * sigma, 0.1 * y[apex])
        left, ok_left = _extent(y, apex, -1, tolerance)
        right, ok_right = _extent(y, apex, +1, tolerance)
        taken.append((left, right))
        if not (ok_left and ok_right):
            continue
        # The phase at the apex is enough to tell a line from a ringing lobe.
        phase = math.degrees(math.atan2(raw.imag[apex],
                                        raw.real[apex] - (0.0 if base is None else base[apex])))
        if abs(phase) <= MAX_PHASE_DEG:
            out.append({"index": apex / UPSAMPLE, "height": float(y[apex]),
                        "fwhm": (right - left) / UPSAMPLE, "phase_deg": phase})
            if len(out) == n:
                break
    return out


def peak_widths(x: np.ndarray, sigma: float, baseline: np.ndarray | None = None,
                n: int = 10, floor: float = 0.01, central: float = 0.95) -> list[dict]:
    """FWHM (points of ``x``) of the ``n`` tallest isolated peaks of the real spectrum.

    Peaks are at least ``max(20 sigma, floor x the tallest)`` above the baseline, in the
    central part of the spectrum; widths are read on a band-limited interpolation (x
    ``UPSAMPLE``). A peak counts as isolated when it falls to half height on both sides
    without rising again (an overlapping neighbour), and as a line when the phase of the
    complex spectrum at its apex is within ``MAX_PHASE_DEG``. Returns dicts of index,
    height, fwhm and that phase (phase_deg), tallest first.
    """
    return _lines(_fine(x, baseline), sigma, n, floor, central)


def peak_phase_deg(z: np.ndarray, apex: int, fwhm: float,
                   base: np.ndarray | None = None) -> float:
    """Phase error (degrees) of the line at ``apex`` of the complex spectrum ``z`` (the
    output of :func:`analytic`, on any grid; ``fwhm`` in its points).

    Within +-2 FWHM of the apex ``z`` is fitted by ``a L(x - c) + b0 + b1 (x - c)``: L the
    complex Lorentzian ``1 / (1 + i (x - c) / g)`` (absorption + i dispersion), a, b0, b1
    complex (the straight part takes the tails of neighbouring lines), c and g free. The
    phase error is arg(a). For any line shape that is even in absorption and odd in
    dispersion about its centre (Gaussian, Voigt) the best a has the line's own phase, so
    a Lorentzian model suffices. ``base`` (the baseline, same grid) is taken off the real
    part only: its Hilbert transform would bend the dispersion tails.
    """
    half = max(4, int(round(2 * fwhm)))
    grid = np.arange(z.size, dtype=np.float64)
    real = z.real if base is None else z.real - base
    # The grid is finer than the line needs: some 40 points of the window suffice.
    u = np.arange(-half, half + 1, max(1, half // 20), dtype=np.float64)
    centre = float(apex)
    # A line shape other than the model's pulls the fitted centre towards the middle of
    # the window: the window follows the fitted centre until it sits on the line's own.
    for _ in range(10):
        at = np.clip(centre + u, 0, z.size - 1)
        data = np.interp(at, grid, real) + 1j * np.interp(at, grid, z.imag)
        coef, shift = _fit_lorentzian(u, data, max(0.5, fwhm / 2), half)
        centre += shift
        if abs(shift) < 0.05:
            break
    return float(np.degrees(np.angle(coef[0])))


def _fit_lorentzian(u: np.ndarray, data: np.ndarray, hwhm: float, half: int):
    """Least-squares ``a L(u - c) + b0 + b1 (u - c)`` (peak_phase_deg); (a, b0, b1), c."""

    def fit(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, g = params
        basis = np.stack([1.0 / (1.0 + 1j * (u - c) / g), np.ones_like(u), u - c], axis=1)
        coef = np.linalg.lstsq(basis, data, rcond=None)[0]
        return coef, data - basis @ coef

    def residual(params: np.ndarray) -> np.ndarray:
        r = fit(params)[1]
        return np.concatenate([r.real, r.imag])

    bounds = ([-half / 2, 0.1], [half / 2, 4.0 * half])
    best = optimize.least_squares(residual, np.array([0.0, hwhm]), bounds=bounds, xtol=1e-6)
    return fit(best.x)[0], float(best.x[0])


def baseline_range(x: np.ndarray, sigma: float, floor: float = 0.002) -> float:
    """Range of the baseline (:func:`baseline_curve`) over the central 90 % of the spectrum,
    relative to the tallest peak above it."""
    x = np.asarray(x, dtype=np.float64)
    curve = baseline_curve(x, sigma, floor)
    return _baseline_range(x, curve)


def _baseline_range(x: np.ndarray, curve: np.ndarray) -> float:
    n = x.size
    core = curve[int(0.05 * n): int(0.95 * n)]
    height = float(np.max((x - curve)[int(0.025 * n): int(0.975 * n)]))
    return float(core.max() - core.min()) / height


def measure_spectrum(x: np.ndarray, sigma: float | None = None, *, noise: np.ndarray | None = None,
                     floor: float = 0.002, n_peaks: int = 10) -> dict:
    """Every measure of one real phased spectrum, on its own grid.

    ``sigma`` (default: estimated from the quiet segments) sets the peak thresholds: 0 for a
    noise-free spectrum, whose noise autocorrelation is then read on ``noise`` (default:
    ``x`` itself). Returns fwhm_pts (median FWHM of the tallest isolated peaks, points) and
    fwhm_all; lag1, lag2 (noise autocorrelation); baseline (:func:`baseline_range`);
    phase_deg (|phase error| of the tallest peak; NaN beyond ``MAX_PHASE_DEG``, where the
    fit has not found a line: two unresolved lines); n_peaks; sigma.
    """
    x = np.asarray(x, dtype=np.float64)
    if sigma is None:
        sigma = noise_sd(x)
    n = x.size
    curve = baseline_curve(x, sigma, floor)
    # Widths are read with the baseline taken off; phases on the spectrum before that, the
    # baseline being taken off the real part only (see peak_phase_deg).
    z, raw = _fine(x, curve), _fine(x, None)
    base = np.interp(np.arange(n * UPSAMPLE) / UPSAMPLE, np.arange(n), curve)
    peaks = _lines(z, sigma, n_peaks, 0.01, 0.95, raw, base)
    y = z.real
    lo, hi = int(0.025 * n) * UPSAMPLE, int(0.975 * n) * UPSAMPLE
    apex = int(np.argmax(y[lo:hi])) + lo
    tolerance = max(4.0 * sigma, 0.1 * y[apex])
    left, _ = _extent(y, apex, -1, tolerance)
    right, _ = _extent(y, apex, +1, tolerance)
    lag1, lag2 = noise_autocorr(x if noise is None else noise)
    widths = [p["fwhm"] for p in peaks]
    phase = abs(peak_phase_deg(raw, apex, right - left, base))
    return {
        "fwhm_pts": float(np.median(widths)) if widths else math.nan,
        "fwhm_all": [round(w, 3) for w in widths],
        "lag1": lag1,
        "lag2": lag2,
        "baseline": _baseline_range(x, curve),
        "phase_deg": phase if phase <= MAX_PHASE_DEG else math.nan,
        "n_peaks": len(peaks),
        "sigma": float(sigma),
    }
