"""The residual step: give back what the network took out.

The network shrinks lines it is unsure of (a few noise sigmas, narrow ones most) and sets the
weakest to zero, and errs there by the whole line, where line broadening keeps them, lower
and wider. The step has two parts:

1. **Amplitude re-fit** (:func:`refit_amplitudes`): each run of the network's output y
   that stands above a low level (its lines, and at that level most of the faint ripple it
   leaves on the baseline) is scaled by the least-squares gain of y against the noisy input
   x, kept within 1-2. The network shrinks whatever it is unsure of, weak lines most; the
   re-fit undoes that shrinkage, as refitting after selection does for the lasso: the
   network chose the shapes, the data give their amplitudes.
2. **Residual line broadening**: what is still missing comes back broadened,

       y' = y + LB(x - y),    LB = ``factor`` x the linewidth of the network's output y,

   the weak lines the network removed, with the noise line broadening leaves (Tukey's
   "twicing", with exponential line broadening as the smoother).

Inside the truth's peak regions this beats both the network and matched line broadening,
keeps the line heights and raises peak F1 (docs/training.md, "Residual line broadening"); the price
is broadened noise back on the baseline, so the whole-spectrum error-based gain and METHOD
7.1's SNR_out fall. The output's linewidth is read off y, where the noise no longer hides it.
``factor`` 0.5 and the re-fit's regions were chosen on validation ladders (peak-region gain,
the figure that tunes the baselines, with peak F1 >= 0.9).

Also home of the two pieces it shares with the classical baselines (train/baselines.py):
the exponential line broadening of a real spectrum and the linewidth of its tallest peaks.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks, peak_widths

from nmrladder.runtime.errors import InputError

#: LB as a multiple of the output's linewidth, chosen on validation ladders (module docstring).
DEFAULT_FACTOR = 0.5
#: LB in points where the output has no line to measure (its noise-free baseline, mostly).
FALLBACK_POINTS = 2.0
#: The output's lines whose width counts: prominence at least this fraction of the height.
FREE_LINE = 0.5
#: The re-fit's regions: where the output stands this many input noise sigmas above the
#: input's baseline level, dilated by REGION_RADIUS points (chosen on validation ladders; at
#: this level they take in most of the output's baseline ripple too, which the higher levels
#: tried, 0.25-1 sigma, leave out, at a lower F1: docs/training.md).
REGION_LEVEL = 0.05
REGION_RADIUS = 16
#: The re-fit's gains are kept within [1, MAX_GAIN]: the network shrinks lines it is unsure
#: of, so a gain below 1 is the noise's, not the line's.
MAX_GAIN = 2.0
#: Recorded with every output the step made (the batch job's manifest): a resume redoes
#: outputs an earlier version of the step made, so one folder never mixes the two.
RESIDUAL_STEP = "refit+lb"


def lorentzian_broaden(x: np.ndarray, lb_points) -> np.ndarray:
    """Exponential line broadening of real spectra [N, L] by LB = ``lb_points`` (FWHM, points).

    The real spectrum is the Fourier transform of a Hermitian, i.e. symmetric, time signal
    whose sample m stands for time ``t_m = m / SW`` (m = 0..L/2, mirrored beyond). Multiplying
    it by ``exp(-pi LB |t|)`` convolves the spectrum circularly with a Lorentzian of FWHM LB
    whose area is 1. With ``LB_Hz = lb_points * SW / L`` the window is
    ``exp(-pi lb_points m / L)``; for an FID zero-filled at least twice this equals
    multiplying the FID by ``exp(-pi LB_Hz t)`` before the transform, exactly.
    ``lb_points`` is a scalar or one value per row. Returns float64 [N, L].
    """
    rows = np.atleast_2d(np.asarray(x, dtype=np.float64))
    length = rows.shape[-1]
    lb = np.asarray(lb_points, dtype=np.float64).reshape(-1, 1)
    m = np.arange(length // 2 + 1)
    window = np.exp(-np.pi * lb * m / length)
    return np.fft.irfft(np.fft.rfft(rows, axis=-1) * window, n=length, axis=-1)


def linewidth(
    spectrum: np.ndarray,
    n_peaks: int = 5,
    threshold: float = 4.0,
    min_prominence: float = 0.0,
    scale: tuple[float, float] | None = None,
) -> float:
    """Linewidth of one spectrum [L], points: the median FWHM of its ``n_peaks`` tallest
    peaks that stand ``threshold`` noise sigmas above its baseline level (height and
    prominence) and whose prominence is at least ``min_prominence`` x their height; NaN when
    none does. ``scale``: (baseline level, noise sigma), by default the spectrum's own robust
    ones (runtime/preprocess.robust_scale). Each FWHM is read within 256 points of its top.

    For a denoised spectrum give the noisy input's scale and ``min_prominence`` 0.5: its own
    sigma is tiny, so ripples on a tall line's tails pass the threshold and their widths run
    down the tail (a third of the network's outputs read 1.2-17x too wide that way). The
    classical matched line broadening, on the noisy input, keeps the defaults it was tuned
    with.
    """
    from nmrladder.runtime.preprocess import robust_scale

    y = np.asarray(spectrum, dtype=np.float64)
    center, sigma = robust_scale(y) if scale is None else (float(scale[0]), float(scale[1]))
    if not sigma > 0:
        return float("nan")
    limit = threshold * sigma
    tops, found = find_peaks(y, height=center + limit, prominence=limit)
    heights = y[tops] - center
    free = found["prominences"] >= min_prominence * heights
    tops, heights = tops[free], heights[free]
    if tops.size == 0:
        return float("nan")
    tallest = tops[np.sort(np.argsort(heights, kind="stable")[::-1][:n_peaks])]
    reach = 256
    widths = peak_widths(
        y,
        tallest,
        rel_height=0.5,
        prominence_data=(
            y[tallest] - center,
            np.maximum(tallest - reach, 0),
            np.minimum(tallest + reach, y.size - 1),
        ),
    )[0]
    widths = widths[np.isfinite(widths)]
    return float(np.median(widths)) if widths.size else float("nan")


def checked_factor(factor, name: str = "residual line broadening factor") -> float:
    """``factor`` as a float, or InputError naming it when it is not a number > 0."""
    try:
        value = float(factor)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number > 0, got {factor!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"{name}: expected a number > 0, got {factor!r}")
    return value


def factor_argument(text: str) -> float:
    """argparse type of the optional ``--residual-lb [FACTOR]``: a clear message when the
    word after the flag is not a number (an input path put right after it, most often)."""
    import argparse

    try:
        return checked_factor(text)
    except InputError as err:
        try:
            float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a factor (a number > 0). The flag takes an optional number: "
                "give one (--residual-lb 0.5), or put the flag after the input paths"
            ) from None
        raise argparse.ArgumentTypeError(str(err)) from None


def refit_amplitudes(
    x: np.ndarray, y: np.ndarray, centers: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """The network outputs y [N, L] with each region scaled by its least-squares gain
    against the spectra x [N, L] (same units; ``centers``/``sigmas`` [N]: x's baseline level
    and noise sigma). A region is a run of the points where y stands REGION_LEVEL sigmas
    above the baseline level, dilated by REGION_RADIUS points; its gain
    ``sum(xc * yc) / sum(yc ** 2)`` (xc, yc: x and y less the baseline level) is clipped to
    [1, MAX_GAIN]. Outside the regions y is unchanged. Returns float64 [N, L]."""
    from nmrladder.runtime.preprocess import dilate

    levels = np.reshape(centers, (-1, 1))
    xc, yc = x - levels, y - levels
    supports = dilate(yc > REGION_LEVEL * np.reshape(sigmas, (-1, 1)), REGION_RADIUS, threads=1)
    out = yc.copy()
    for row, support in enumerate(supports):
        # Boundaries 0, start_0, stop_0, start_1, ..., L: the segments between them alternate
        # gap, region, gap, ... (a gap may be empty), so the regions are the odd segments.
        flags = support.view(np.int8)
        changes = np.flatnonzero(flags[1:] != flags[:-1]) + 1
        head = [0, 0] if flags[0] else [0]
        bounds = np.concatenate((head, changes, [len(flags)])).astype(np.intp)
        if bounds.size < 3:
            continue  # no region
        # Zero-padded so that a region ending at L has a valid reduceat index.
        fit = np.add.reduceat(np.append(xc[row] * yc[row], 0.0), bounds[:-1])[1::2]
        energy = np.add.reduceat(np.append(yc[row] * yc[row], 0.0), bounds[:-1])[1::2]
        gains = np.ones(bounds.size - 1)
        gains[1::2] = np.clip(fit / np.maximum(energy, np.finfo(float).tiny), 1.0, MAX_GAIN)
        out[row] *= np.repeat(gains, np.diff(bounds))
    return out + levels


def restore_residual(
    x: np.ndarray,
    y: np.ndarray,
    factor: float = DEFAULT_FACTOR,
    input_scale: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The residual step for spectra x and network outputs y ([N, L] or [L], same units):
    :func:`refit_amplitudes`, then ``y + LB(x - y)`` with LB = ``factor`` x :func:`linewidth`
    of each re-fitted row of y: its lines that stand free and 4 noise sigmas of x above x's
    baseline level (FALLBACK_POINTS where it has none). ``input_scale``: (centers [N],
    sigmas [N]) of x when the caller has them (the input scaling's), else measured here.
    Returns float32 in y's shape."""
    from nmrladder.runtime.preprocess import robust_scale_batch

    factor = checked_factor(factor)
    x_rows = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y_rows = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if x_rows.shape != y_rows.shape:
        raise InputError(
            f"residual line broadening: spectra {x_rows.shape} and outputs {y_rows.shape} differ"
        )
    if input_scale is None:
        input_scale = robust_scale_batch(x_rows)
    centers, sigmas = (np.ravel(values) for values in input_scale)
    y_rows = refit_amplitudes(x_rows, y_rows, centers, sigmas)
    widths = np.array([
        linewidth(out, min_prominence=FREE_LINE, scale=(center, sigma))
        for out, center, sigma in zip(y_rows, centers, sigmas, strict=True)
    ])
    lb = np.where(np.isfinite(widths), factor * widths, FALLBACK_POINTS)
    restored = y_rows + lorentzian_broaden(x_rows - y_rows, lb)
    return restored.astype(np.float32).reshape(np.shape(y))


class ResidualBroadening:
    """Any denoiser (``.denoise(x)``) followed by :func:`restore_residual`: an evaluation row
    "model + residual LB".

    A denoiser that runs the shared core (runtime/core.py: ``Denoiser``, ``TorchDenoiser``;
    they offer ``with_residual``) does the step itself, inside that core, on the input scaling
    it measured for the network: the row then scores what ``Denoiser(residual_lb=...)`` and
    ``nmrladder denoise --residual-lb`` deliver. Any other denoiser is followed by
    :func:`restore_residual`, which measures the input's scaling itself.
    """

    def __init__(self, denoiser, factor: float = DEFAULT_FACTOR):
        self.denoiser = denoiser
        self.factor = checked_factor(factor)
        with_residual = getattr(denoiser, "with_residual", None)
        self._restoring = with_residual(self.factor) if callable(with_residual) else None

    def denoise(self, x: np.ndarray) -> np.ndarray:
        if self._restoring is not None:
            return self._restoring.denoise(x)
        return restore_residual(x, self.denoiser.denoise(x), self.factor)

    def __repr__(self) -> str:
        return f"ResidualBroadening({self.denoiser!r}, factor={self.factor:g})"
