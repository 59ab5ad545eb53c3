"""SNR-ladder simulator: realistic 1D NMR spectra with a known truth (NumPy only).

A ladder is R replicate spectra of one simulated sample whose SNR grows by a factor T per
rung (METHOD section 1). Every spectrum is made the way a spectrometer makes it: a sum of
damped complex exponentials (the FID), complex white noise, exponential apodization,
first-point halving, zero-filling, FFT, phase errors and a rolling baseline, real part.

Conventions (``nmrladder.runtime.conventions``):

- SNR: ``SNR_CONVENTION``, height of the tallest non-solvent peak of the noise-free real
  spectrum over the standard deviation of the real-part noise. The truth is stored in
  *truth units*, where that height is 1, so the noise std of rung k is ``1 / snr[k]``.
- Shifts: ``SHIFT_CONVENTION``, ``shifted[i] = x[i - d]`` in points. Rung k holds the truth
  shifted by ``shifts[k]``; the shift is applied exactly, as a phase ramp on the FID.
- Orientation: the NMR way, ppm decreasing with index, ``ppm[i] = ppm0 - i * sw_ppm / L``;
  point ``L // 2`` is the carrier.

Entry points: :func:`simulate_ladders` (in memory), :func:`simulate_to_file` (chunked, bounded
memory, HDF5), :func:`load_ladders` and :func:`open_ladders` (lazy, streaming).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nmrladder import __version__
from nmrladder.runtime.atomic import atomic_path
from nmrladder.runtime.conventions import SHIFT_CONVENTION, SNR_CONVENTION
from nmrladder.runtime.errors import InputError

__all__ = [
    "ACQ_FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LINESHAPES",
    "NORM_METHODS",
    "NUCLEI",
    "ORIENTATION",
    "LadderFile",
    "Ladders",
    "SimOptions",
    "fourier_shift_real",
    "load_ladders",
    "open_ladders",
    "simulate_ladders",
    "simulate_to_file",
]

FORMAT_NAME = "nmrladder-ladders"
FORMAT_VERSION = 1

#: Normalisation names; ``norm_method`` stores the index into this tuple.
NORM_METHODS = ("none", "max", "area", "zscore", "reference")
#: What ``normalisation="random"`` draws from, per rung.
RANDOM_NORM_METHODS = ("max", "area", "zscore", "reference")
LINESHAPES = ("lorentzian", "gaussian", "voigt")
NUCLEI = ("1H", "13C", "19F")

ORIENTATION = (
    "ppm decreases with index: ppm[i] = ppm0 - i * sw_ppm / L, point L // 2 is the carrier "
    "(the FID is built as exp(-2 pi i nu t), so FFT + fftshift gives this order directly)"
)

DESCRIPTION = (
    "Simulated SNR ladders: x[n, k] is rung k of sample n, normalised; "
    "x * norm_scale + norm_offset = truth shifted by the rung's drift + noise (truth units, "
    "tallest non-solvent peak = 1); rung k's noise std is noise_sigma[n, k] = 1 / snr[n, k]."
)

# Observe frequency of each nucleus per MHz of the spectrometer's 1H frequency.
_LARMOR_RATIO = {"1H": 1.0, "13C": 0.25145020, "19F": 0.94094011}

# First-order multiplets: number of equivalent partners per coupling (binomial intensities).
_MULTIPLET_PARTNERS = {"s": (), "d": (1,), "t": (2,), "q": (3,), "dd": (1, 1), "dt": (1, 2)}

# Line kinds (which lines count for the SNR reference height, which are solvent).
_MAIN, _WEAK, _SOLVENT = 0, 1, 2

# Per-nucleus defaults of the options left at None.
_PRESETS: dict[str, dict[str, Any]] = {
    "1H": {
        "sw_ppm": (12.0, 20.0),
        "carrier_ppm": (4.5, 5.5),
        "peak_ppm": (0.5, 9.5),
        "n_multiplets": (3, 25),
        "multiplets": {"s": 0.30, "d": 0.20, "t": 0.12, "q": 0.06, "dd": 0.17, "dt": 0.15},
        "j_hz": (1.0, 17.0),
        "solvent_probability": 0.7,
        "solvent_height": (5.0, 50.0),
        "solvent_ppm": (4.65, 4.85),
        "solvent_lines": ((0.0, 1.0),),
        "reference_probability": 0.5,
        "reference_ppm": 0.0,
    },
    "13C": {
        "sw_ppm": (200.0, 240.0),
        "carrier_ppm": (95.0, 110.0),
        "peak_ppm": (5.0, 210.0),
        "n_multiplets": (5, 30),
        "multiplets": {"s": 1.0},  # proton-decoupled
        "j_hz": (1.0, 17.0),
        "solvent_probability": 0.5,
        "solvent_height": (1.0, 5.0),
        "solvent_ppm": (77.06, 77.26),  # CDCl3
        "solvent_lines": ((-32.0, 1.0), (0.0, 1.0), (32.0, 1.0)),  # 1:1:1 C-D triplet
        "reference_probability": 0.3,
        "reference_ppm": 0.0,
    },
    "19F": {
        "sw_ppm": (100.0, 300.0),
        "carrier_ppm": (-140.0, -80.0),
        "peak_ppm": (-220.0, -40.0),
        "n_multiplets": (2, 12),
        "multiplets": {"s": 0.30, "d": 0.25, "t": 0.15, "q": 0.05, "dd": 0.15, "dt": 0.10},
        "j_hz": (5.0, 60.0),
        "solvent_probability": 0.0,
        "solvent_height": (5.0, 50.0),
        "solvent_ppm": (-76.6, -76.4),
        "solvent_lines": ((0.0, 1.0),),
        "reference_probability": 0.3,
        "reference_ppm": -63.72,  # C6H5CF3
    },
}


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimOptions:
    """Options of the simulator (keyword arguments of :func:`simulate_ladders`).

    Ranges are ``(lo, hi)`` tuples drawn uniformly per sample unless stated. Options left at
    None take the preset of ``nucleus``.

    Attributes
    ----------
    nucleus : {"1H", "13C", "19F"}
        Preset: 1H multiplets with a water line; 13C proton-decoupled singlets over ~200-240
        ppm with a CDCl3 triplet; 19F multiplets with larger couplings over ~100-300 ppm.
    normalisation : str or sequence of str
        "random" (one of max, area, zscore, reference per rung), one name of
        ``NORM_METHODS``, or a sequence of names to draw from per rung.
    max_drift : float
        Global drift per rung, uniform in +-max_drift points (sub-point).
    nonlinear_drift : float
        Probability per sample of a non-linear drift: 2-3 frequency regions, each with its
        own extra offset per rung, uniform in +-region_drift points.
    region_drift : float
        Bound of the per-region offsets, points.
    snr_jitter : float
        Rung k gets SNR ``snr * T**k * (1 + u)``, u uniform in +-snr_jitter.
    zero_fill : int
        The FID has ``length // zero_fill`` complex points, zero-filled to ``length``.
    mhz_range : (float, float)
        Spectrometer 1H frequency, MHz (the observe frequency follows the nucleus).
    sw_ppm, carrier_ppm, peak_ppm : (float, float)
        Spectral width, carrier (centre, point L // 2) and where lines are placed, ppm.
    n_multiplets : (int, int)
        Number of multiplets (13C: singlets), inclusive.
    multiplets : dict[str, float]
        Probabilities of the multiplet types s, d, t, q, dd, dt.
    j_hz : (float, float)
        Coupling constants, Hz.
    linewidth_hz : (float, float)
        Full width at half height of the lines before apodization, Hz.
    lineshape : {"random", "lorentzian", "gaussian", "voigt"}
        Decay of the FID per sample. The Gaussian part (field inhomogeneity) is shared by
        all lines of a sample; the Lorentzian part varies per multiplet.
    solvent_probability, solvent_height, solvent_ppm
        Chance of a solvent line, its height over the tallest non-solvent peak, position.
    reference_probability, reference_ppm
        Chance and position of a reference singlet (DSS/TMS, C6H5CF3 for 19F).
    weak_peaks : (int, int)
        Number of weak singlets, inclusive.
    weak_height : (float, float)
        Their height in units of rung 0's requested noise std.
    apodization_probability : float
        Chance of an exponential window; its line broadening is drawn from ``lb_hz``.
    lb_hz : (float, float)
        Exponential line broadening, Hz.
    phase0_deg, phase1_deg : float
        Zero- and first-order phase errors (first order: over the whole width, pivot at
        the carrier), uniform in +-value, degrees.
    baseline_amplitude : float
        Largest baseline distortion, truth units (uniform in [0, value] per sample).
    baseline_order : int
        Highest harmonic of the baseline (a low-order Fourier series over the spectrum).
    min_decay : float
        The FID envelope must have decayed by exp(-min_decay) at the last acquired point;
        narrower lines are broadened to meet it. 0 allows truncation wiggles.
    keep_clean : bool
        Also keep ``clean``: the noise-free content of every rung, [N, R, L].
    """

    nucleus: str = "1H"
    normalisation: str | tuple[str, ...] = "random"
    max_drift: float = 20.0
    nonlinear_drift: float = 0.0
    region_drift: float = 3.0
    snr_jitter: float = 0.03
    zero_fill: int = 2
    mhz_range: tuple[float, float] = (60.0, 800.0)
    sw_ppm: tuple[float, float] | None = None
    carrier_ppm: tuple[float, float] | None = None
    peak_ppm: tuple[float, float] | None = None
    n_multiplets: tuple[int, int] | None = None
    multiplets: dict[str, float] | None = None
    j_hz: tuple[float, float] | None = None
    linewidth_hz: tuple[float, float] = (0.3, 5.0)
    lineshape: str = "random"
    solvent_probability: float | None = None
    solvent_height: tuple[float, float] | None = None
    solvent_ppm: tuple[float, float] | None = None
    reference_probability: float | None = None
    reference_ppm: float | None = None
    weak_peaks: tuple[int, int] = (0, 6)
    weak_height: tuple[float, float] = (1.0, 3.0)
    apodization_probability: float = 0.5
    lb_hz: tuple[float, float] = (0.1, 1.0)
    phase0_deg: float = 5.0
    phase1_deg: float = 5.0
    baseline_amplitude: float = 0.02
    baseline_order: int = 3
    min_decay: float = 3.0
    keep_clean: bool = False


_OPTION_NAMES = tuple(f.name for f in fields(SimOptions))


def _check_range(name: str, value: Any, *, low: float | None = None, integer: bool = False):
    """Validate a (lo, hi) option; return it as a tuple of float (or int)."""
    try:
        lo, hi = value
        lo, hi = (int(lo), int(hi)) if integer else (float(lo), float(hi))
    except (TypeError, ValueError):
        raise InputError(f"option {name}: expected a (lo, hi) pair, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise InputError(f"option {name}: need finite lo <= hi, got ({lo}, {hi})")
    if low is not None and lo < low:
        raise InputError(f"option {name}: values must be >= {low}, got ({lo}, {hi})")
    return lo, hi


def _check_scalar(name: str, value: Any, *, low: float, high: float | None = None) -> float:
    """Validate a finite scalar option in [low, high]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"option {name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < low or (high is not None and v > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"option {name}: must be {bound}, got {value!r}")
    return v


def _resolve_options(options: Mapping[str, Any]) -> SimOptions:
    """Check the keyword options, fill preset defaults, return a validated SimOptions."""
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise InputError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(_OPTION_NAMES)}"
        )
    nucleus = options.get("nucleus") or "1H"
    if nucleus not in NUCLEI:
        raise InputError(f"option nucleus: unknown nucleus {nucleus!r}; choose from {NUCLEI}")
    # Precedence: explicit option > the nucleus preset > the SimOptions default.
    o = asdict(SimOptions())
    o.update({k: v for k, v in _PRESETS[nucleus].items() if k in o})
    o.update({k: v for k, v in options.items() if v is not None})

    o["normalisation"] = _check_normalisation(o["normalisation"])
    if o["lineshape"] != "random" and o["lineshape"] not in LINESHAPES:
        raise InputError(
            f"option lineshape: unknown lineshape {o['lineshape']!r}; "
            f"choose from {('random', *LINESHAPES)}"
        )
    for name in ("max_drift", "region_drift", "phase0_deg", "phase1_deg", "baseline_amplitude",
                 "min_decay"):
        o[name] = _check_scalar(name, o[name], low=0.0)
    o["snr_jitter"] = _check_scalar("snr_jitter", o["snr_jitter"], low=0.0, high=0.5)
    for name in ("nonlinear_drift", "solvent_probability", "reference_probability",
                 "apodization_probability"):
        o[name] = _check_scalar(name, o[name], low=0.0, high=1.0)
    o["reference_ppm"] = _check_scalar("reference_ppm", o["reference_ppm"], low=-math.inf)
    for name in ("mhz_range", "sw_ppm", "linewidth_hz", "j_hz", "solvent_height", "weak_height"):
        o[name] = _check_range(name, o[name], low=1e-6)
    o["lb_hz"] = _check_range("lb_hz", o["lb_hz"], low=0.0)
    for name in ("carrier_ppm", "peak_ppm", "solvent_ppm"):
        o[name] = _check_range(name, o[name])
    o["n_multiplets"] = _check_range("n_multiplets", o["n_multiplets"], low=1, integer=True)
    o["weak_peaks"] = _check_range("weak_peaks", o["weak_peaks"], low=0, integer=True)
    for name, low in (("zero_fill", 1), ("baseline_order", 0)):
        value = o[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"option {name}: must be an integer >= {low}, got {value!r}")
        o[name] = int(value)
    o["multiplets"] = _check_multiplets(o["multiplets"])
    o["keep_clean"] = bool(o["keep_clean"])
    return SimOptions(**o)


def _check_normalisation(value: Any) -> str | tuple[str, ...]:
    """'random', one method name, or a non-empty sequence of method names."""
    if isinstance(value, str):
        if value != "random" and value not in NORM_METHODS:
            raise InputError(
                f"option normalisation: unknown normalisation {value!r}; "
                f"choose from {('random', *NORM_METHODS)}"
            )
        return value
    names = tuple(value) if isinstance(value, Sequence) else ()
    bad = [v for v in names if v not in NORM_METHODS]
    if not names or bad:
        raise InputError(
            f"option normalisation: unknown normalisation {value!r}; "
            f"choose from {('random', *NORM_METHODS)} or a list of {NORM_METHODS}"
        )
    return names


def _check_multiplets(value: Any) -> dict[str, float]:
    """Multiplet probabilities: known types, non-negative, normalised to sum 1."""
    try:
        probs = {str(k): float(v) for k, v in dict(value).items()}
    except (TypeError, ValueError):
        raise InputError(
            f"option multiplets: expected a dict type -> probability, got {value!r}"
        ) from None
    bad = [k for k in probs if k not in _MULTIPLET_PARTNERS]
    total = sum(probs.values())
    if bad or any(p < 0 for p in probs.values()) or total <= 0:
        raise InputError(
            f"option multiplets: need non-negative probabilities of {tuple(_MULTIPLET_PARTNERS)}"
            f" with a positive sum, got {value!r}"
        )
    return {k: p / total for k, p in probs.items()}


@dataclass(frozen=True)
class _Config:
    """Everything that defines a simulated data set (the seed included)."""

    n: int
    rungs: int
    length: int
    T: float | tuple[float, float]
    snr: float
    seed: int
    opts: SimOptions

    @property
    def n_regions_max(self) -> int:
        return 3 if self.opts.nonlinear_drift > 0 else 1

    @property
    def norm_choices(self) -> tuple[int, ...]:
        norm = self.opts.normalisation
        if norm == "random":
            names = RANDOM_NORM_METHODS
        else:
            names = (norm,) if isinstance(norm, str) else norm
        return tuple(NORM_METHODS.index(name) for name in names)


def _make_config(n, rungs, length, T, snr, seed, options) -> _Config:
    """Validate the main arguments and the options."""
    for name, value, low in (("n", n, 1), ("rungs", rungs, 2), ("length", length, 256)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"option {name}: must be an integer >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"option seed: must be a non-negative integer, got {seed!r}")
    snr = float(snr) if isinstance(snr, (int, float, np.number)) else float("nan")
    if not (math.isfinite(snr) and snr > 0):
        raise InputError(f"option snr: must be a finite number > 0, got {snr!r}")
    T = _check_T(T)
    opts = _resolve_options(options)
    if opts.max_drift + opts.region_drift >= length / 8:
        raise InputError(
            f"option max_drift: max_drift + region_drift must be < length / 8 "
            f"({length / 8:g} points), got {opts.max_drift + opts.region_drift:g}"
        )
    if length // opts.zero_fill < 64:
        raise InputError(
            f"option zero_fill: length // zero_fill must be >= 64 FID points, "
            f"got {length // opts.zero_fill}"
        )
    return _Config(int(n), int(rungs), int(length), T, snr, int(seed), opts)


def _check_T(T: Any) -> float | tuple[float, float]:
    """T > 1, or a (lo, hi) range with 1 < lo <= hi."""
    if isinstance(T, (int, float, np.number)) and not isinstance(T, bool):
        if not (math.isfinite(float(T)) and float(T) > 1):
            raise InputError(f"option T: must be > 1, got {T!r}")
        return float(T)
    lo, hi = _check_range("T", T)
    if lo <= 1:
        raise InputError(f"option T: the range must lie above 1, got ({lo}, {hi})")
    return (lo, hi)


# --------------------------------------------------------------------------------------------
# fast sums of damped exponentials
# --------------------------------------------------------------------------------------------


def _powers(log_ratio: np.ndarray, n: int) -> np.ndarray:
    """``exp(log_ratio[:, None] * arange(n))`` by doubling: n multiplications, log2(n) exps.

    Each doubling step multiplies the filled block by an exactly computed exp, so the
    rounding error grows with log2(n), not with n as a cumulative product's would.
    """
    log_ratio = np.asarray(log_ratio, dtype=np.complex128)
    out = np.empty((log_ratio.size, n), dtype=np.complex128)
    out[:, 0] = 1.0
    filled = 1
    while filled < n:
        step = min(filled, n - filled)
        factor = np.exp(log_ratio * filled)[:, None]
        np.multiply(out[:, :step], factor, out=out[:, filled : filled + step])
        filled += step
    return out


def _block(n: int) -> tuple[int, int]:
    """Split n points into q_count blocks of b points (b a power of two near sqrt(n))."""
    b = 1 << max(1, round(math.log2(max(n, 2)) / 2))
    return -(-n // b), b


def _damped_sum(amplitudes: np.ndarray, log_ratio: np.ndarray, n: int) -> np.ndarray:
    """``sum_j amplitudes[j] * exp(log_ratio[j] * m)`` for m = 0..n-1, complex128 [n].

    Writes m = q * b + p, so the sum is the matrix product of [Q, P] (powers of
    exp(log_ratio * b), scaled by the amplitudes) and [P, b] (powers of exp(log_ratio)):
    n * P multiply-adds in BLAS instead of n * P complex exponentials.
    """
    q_count, b = _block(n)
    coarse = _powers(np.asarray(log_ratio) * b, q_count) * np.asarray(amplitudes)[:, None]
    fine = _powers(log_ratio, b)
    return (np.ascontiguousarray(coarse.T) @ fine).ravel()[:n]


def _decay_sums(weights: np.ndarray, log_ratio: np.ndarray) -> np.ndarray:
    """``sum_m weights[m] * exp(log_ratio[j] * m)`` per j (real inputs), float64 [P].

    This is a line's peak height at resonance: the weighted sum of its decay.
    """
    n = weights.size
    if len(log_ratio) == 0:
        return np.zeros(0)
    q_count, b = _block(n)
    padded = np.zeros(q_count * b)
    padded[:n] = weights
    coarse = _powers(np.asarray(log_ratio) * b, q_count).real
    fine = _powers(log_ratio, b).real
    return np.einsum("jq,jq->j", coarse, fine @ padded.reshape(q_count, b).T)


# --------------------------------------------------------------------------------------------
# one sample
# --------------------------------------------------------------------------------------------


@dataclass
class _Acquisition:
    """Per-sample acquisition and processing parameters."""

    spectrometer_mhz: float
    mhz: float
    sw_ppm: float
    sw_hz: float
    carrier_ppm: float
    td: int
    lineshape: str
    lw_hz: float
    gauss_hz: float
    voigt_fraction: float
    lb_hz: float
    phase0_deg: float
    phase1_deg: float

    @property
    def aq_s(self) -> float:
        return self.td / self.sw_hz


def _draw_acquisition(rng: np.random.Generator, cfg: _Config) -> _Acquisition:
    """Spectrometer, spectral window, lineshape, apodization and phase errors of a sample."""
    o = cfg.opts
    spectrometer_mhz = rng.uniform(*o.mhz_range)
    mhz = spectrometer_mhz * _LARMOR_RATIO[o.nucleus]
    sw_ppm = rng.uniform(*o.sw_ppm)
    carrier = rng.uniform(*o.carrier_ppm)
    lineshape = LINESHAPES[rng.integers(3)] if o.lineshape == "random" else o.lineshape
    lw = rng.uniform(*o.linewidth_hz)
    # Voigt: Lorentzian fraction u of the width, the Gaussian part chosen so the total FWHM
    # is ~lw (Olivero & Longbothum: fV = 0.5346 fL + sqrt(0.2166 fL^2 + fG^2)).
    u = {"lorentzian": 1.0, "gaussian": 0.0, "voigt": rng.uniform(0.2, 0.8)}[lineshape]
    f_l = u * lw
    gauss = math.sqrt(max((lw - 0.5346 * f_l) ** 2 - 0.2166 * f_l**2, 0.0))
    if lineshape == "lorentzian":
        gauss = 0.0
    lb = rng.uniform(*o.lb_hz) if rng.random() < o.apodization_probability else 0.0
    phase0 = rng.uniform(-1.0, 1.0) * o.phase0_deg
    phase1 = rng.uniform(-1.0, 1.0) * o.phase1_deg
    return _Acquisition(
        spectrometer_mhz=spectrometer_mhz, mhz=mhz, sw_ppm=sw_ppm, sw_hz=sw_ppm * mhz,
        carrier_ppm=carrier, td=cfg.length // o.zero_fill, lineshape=lineshape, lw_hz=lw,
        gauss_hz=gauss, voigt_fraction=u, lb_hz=lb, phase0_deg=phase0, phase1_deg=phase1,
    )


@dataclass
class _Lines:
    """All lines of a sample: frequency (Hz from the carrier), real amplitude (area, before
    the phase errors), Lorentzian FWHM (Hz), kind, and the multiplet each belongs to."""

    freq_hz: np.ndarray
    amp: np.ndarray
    lorentz_hz: np.ndarray
    kind: np.ndarray
    group: np.ndarray
    solvent_ppm: float
    solvent_height: float
    reference_ppm: float
    n_multiplets: int
    n_weak: int


def _multiplet_sticks(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Lines of a first-order multiplet: offsets = coef @ couplings (Hz), binomial weights.

    Returns coef [S, n_couplings] and weights [S] (sum 1): e.g. a triplet is offsets
    (-J, 0, J) with weights (1/4, 1/2, 1/4); a dt combines a doublet and a triplet.
    """
    partners = _MULTIPLET_PARTNERS[kind]
    coef, weights = np.zeros((1, len(partners))), np.ones(1)
    for c, n_equiv in enumerate(partners):
        k = np.arange(n_equiv + 1)
        binom = np.array([math.comb(n_equiv, int(i)) for i in k]) / 2.0**n_equiv
        step = np.zeros((k.size, len(partners)))
        step[:, c] = k - n_equiv / 2
        coef = (coef[:, None, :] + step[None, :, :]).reshape(-1, len(partners))
        weights = (weights[:, None] * binom[None, :]).ravel()
    return coef, weights


_STICKS = {kind: _multiplet_sticks(kind) for kind in _MULTIPLET_PARTNERS}


def _placement_window(cfg: _Config, acq: _Acquisition) -> tuple[float, float]:
    """ppm range where lines may sit: peak_ppm inside the window, away from its edges.

    The margin keeps lines clear of the circular wrap of the drift.
    """
    o = cfg.opts
    half = acq.sw_ppm / 2
    margin = max(0.05 * acq.sw_ppm, (o.max_drift + o.region_drift + 16) * acq.sw_ppm / cfg.length)
    lo_win, hi_win = acq.carrier_ppm - half + margin, acq.carrier_ppm + half - margin
    lo, hi = max(o.peak_ppm[0], lo_win), min(o.peak_ppm[1], hi_win)
    return (lo, hi) if lo < hi else (lo_win, hi_win)


def _draw_lines(rng: np.random.Generator, cfg: _Config, acq: _Acquisition) -> _Lines:
    """Multiplets, the reference singlet, weak peaks and the solvent of one sample.

    Amplitudes of main lines are relative areas; weak lines carry their target height in
    rung-0 noise stds and the solvent its height over the tallest other peak (both are
    turned into amplitudes once the heights are known).
    """
    o = cfg.opts
    lo, hi = _placement_window(cfg, acq)
    freq, amp, lor, kind, group = [], [], [], [], []
    base_lorentz = acq.voigt_fraction * acq.lw_hz

    def add(hz, a, width, k, g):
        freq.append(np.atleast_1d(hz).astype(np.float64))
        for out, value in ((amp, a), (lor, width), (kind, k), (group, g)):
            out.append(np.broadcast_to(value, freq[-1].shape))

    # Multiplets, drawn all at once, then expanded into lines type by type.
    types = list(o.multiplets)
    n_mult = int(rng.integers(o.n_multiplets[0], o.n_multiplets[1] + 1))
    mtype = rng.choice(len(types), size=n_mult, p=[o.multiplets[t] for t in types])
    couplings = -np.sort(-rng.uniform(*o.j_hz, size=(n_mult, 2)), axis=1)  # J1 >= J2
    centre_hz = (rng.uniform(lo, hi, size=n_mult) - acq.carrier_ppm) * acq.mhz
    n_h = rng.choice([1.0, 2.0, 3.0], size=n_mult, p=[0.5, 0.35, 0.15])
    area = n_h * np.exp(rng.uniform(math.log(0.1), 0.0, size=n_mult))  # concentrations ~10x
    width = base_lorentz * rng.uniform(0.8, 1.25, size=n_mult)
    for t, name in enumerate(types):
        sel = np.flatnonzero(mtype == t)
        if sel.size:
            coef, weights = _STICKS[name]
            hz = centre_hz[sel, None] + couplings[sel, : coef.shape[1]] @ coef.T
            n_sticks = weights.size
            add(hz.ravel(), (area[sel, None] * weights).ravel(), np.repeat(width[sel], n_sticks),
                _MAIN, np.repeat(sel, n_sticks))

    reference_ppm = math.nan
    if rng.random() < o.reference_probability:
        ppm = o.reference_ppm + rng.uniform(-0.02, 0.02)
        if abs(ppm - acq.carrier_ppm) < acq.sw_ppm / 2 * 0.95:
            reference_ppm = ppm
            area = math.exp(rng.uniform(math.log(0.3), math.log(5.0)))
            add((ppm - acq.carrier_ppm) * acq.mhz, area, base_lorentz, _MAIN, n_mult)

    n_weak = int(rng.integers(o.weak_peaks[0], o.weak_peaks[1] + 1))
    if n_weak:
        hz = (rng.uniform(lo, hi, size=n_weak) - acq.carrier_ppm) * acq.mhz
        heights = rng.uniform(*o.weak_height, size=n_weak)
        add(hz, heights, base_lorentz, _WEAK, n_mult + 1 + np.arange(n_weak))

    solvent_ppm, solvent_height = math.nan, math.nan
    if rng.random() < o.solvent_probability:
        ppm = rng.uniform(*o.solvent_ppm)
        if abs(ppm - acq.carrier_ppm) < acq.sw_ppm / 2 * 0.9:
            solvent_ppm, solvent_height = ppm, rng.uniform(*o.solvent_height)
            width = acq.lw_hz * rng.uniform(0.5, 2.0)  # solvent lines: Lorentzian, often broad
            offsets, _ = np.array(_PRESETS[o.nucleus]["solvent_lines"]).T
            add((ppm - acq.carrier_ppm) * acq.mhz + offsets, solvent_height, width, _SOLVENT, -1)

    cat = np.concatenate
    return _Lines(
        freq_hz=cat(freq), amp=cat(amp).astype(np.float64), lorentz_hz=cat(lor),
        kind=cat(kind), group=cat(group), solvent_ppm=solvent_ppm, solvent_height=solvent_height,
        reference_ppm=reference_ppm, n_multiplets=n_mult, n_weak=n_weak,
    )


def _apply_decay_floor(lines: _Lines, acq: _Acquisition, min_decay: float) -> float:
    """Broaden lines whose FID would not decay by exp(-min_decay) within the acquisition.

    Pure Gaussian samples get a wider shared Gaussian, the others wider Lorentzians (the
    truncation wiggles of an undecayed FID are thus avoided). Returns the Lorentzian floor, Hz.
    """
    aq = acq.aq_s
    if acq.lineshape == "gaussian":
        need = min_decay - math.pi * acq.lb_hz * aq
        if need > 0:
            floor_gauss = math.sqrt(need * 4 * math.log(2)) / (math.pi * aq)
            acq.gauss_hz = max(acq.gauss_hz, floor_gauss)
    gauss_term = (math.pi * acq.gauss_hz * aq) ** 2 / (4 * math.log(2))
    floor = max(0.0, (min_decay - gauss_term) / (math.pi * aq) - acq.lb_hz)
    np.maximum(lines.lorentz_hz, floor, out=lines.lorentz_hz)
    return floor


def _draw_regions(rng: np.random.Generator, cfg: _Config, pos: np.ndarray, lines: _Lines):
    """Region edges (points, un-drifted frame) for a non-linear drift, [0, L] otherwise.

    Regions are cut in the widest gaps between multiplets, so that few line tails cross
    an edge.
    """
    L = cfg.length
    if cfg.opts.nonlinear_drift == 0 or rng.random() >= cfg.opts.nonlinear_drift:
        return np.array([0, L])
    main = lines.kind == _MAIN
    groups = np.unique(lines.group[main])
    n_regions = min(int(rng.integers(2, 4)), groups.size)
    if n_regions < 2:
        return np.array([0, L])
    lo = np.array([pos[main & (lines.group == g)].min() for g in groups])
    hi = np.array([pos[main & (lines.group == g)].max() for g in groups])
    order = np.argsort(lo)
    lo, hi = lo[order], np.maximum.accumulate(hi[order])
    gaps = lo[1:] - hi[:-1]
    cut = np.sort(np.argsort(gaps)[::-1][: n_regions - 1])
    edges = np.rint((hi[cut] + lo[cut + 1]) / 2).astype(np.int64)
    return np.concatenate([[0], np.clip(edges, 1, L - 1), [L]])


def _baseline(rng: np.random.Generator, cfg: _Config) -> tuple[np.ndarray, np.ndarray, float]:
    """FID points 0..order that make a low-order rolling baseline (truth units).

    A distorted start of the FID is what makes real baselines roll: FID point m adds a
    sinusoid with m periods over the spectrum. Returns the FID points, the baseline
    (float64 [L]) and its largest |value|.
    """
    L, o = cfg.length, cfg.opts
    if o.baseline_order == 0 or o.baseline_amplitude == 0:
        return np.zeros(1, dtype=np.complex128), np.zeros(L), 0.0
    order = int(rng.integers(1, o.baseline_order + 1))
    coef = rng.standard_normal(order + 1) + 1j * rng.standard_normal(order + 1)
    coef /= 1.0 + np.arange(order + 1)  # higher harmonics weaker: smooth
    target = rng.uniform(0.0, o.baseline_amplitude)
    shape = _spectrum(coef, L)
    scale = target / np.abs(shape).max()
    return coef * scale, shape * scale, target


def _alternate(n: int) -> np.ndarray:
    """(-1)^m: multiplying the FID by it moves the spectrum by L/2 points (fftshift)."""
    out = np.ones(n)
    out[1::2] = -1.0
    return out


def _real_fft(fid: np.ndarray, length: int) -> np.ndarray:
    """``np.fft.fft(fid, n=length).real`` along the last axis at half the cost.

    Only the Hermitian part of a signal reaches the real part of its spectrum, and that
    part's transform is the real-output FFT (hfft) of its first half.
    """
    half, td = length // 2 + 1, fid.shape[-1]
    first = np.zeros((*fid.shape[:-1], half), dtype=np.complex128)
    n = min(td, half)
    first[..., :n] = 0.5 * fid[..., :n]
    first[..., 0] = fid[..., 0].real
    if td > length - half + 1:  # without zero-filling the FID's end folds back onto its start
        m = np.arange(max(1, length - td + 1), half)
        first[..., m] += 0.5 * np.conj(fid[..., length - m])
    return np.fft.hfft(first, n=length)


def _spectrum(fid: np.ndarray, length: int) -> np.ndarray:
    """Real spectrum (float64 [length]) of a processed FID, zero-filled, NMR orientation."""
    return _real_fft(fid * _alternate(fid.size), length)


def _ramp(shifts: np.ndarray, length: int, n: int) -> np.ndarray:
    """FID multipliers [len(shifts), n] that shift the spectrum by ``shifts`` points.

    ``exp(2 pi i (d / L + 1/2) m)``: the 1/2 is the fftshift (-1)^m; the ramp moves the
    content to higher index, ``shifted[i] = x[i - d]`` (SHIFT_CONVENTION), exactly.
    """
    return _powers(2j * np.pi * (np.asarray(shifts, dtype=np.float64).ravel() / length + 0.5), n)


def _normalise(
    raw: np.ndarray, method: int, ref_pos: float
) -> tuple[np.ndarray, int, float, float]:
    """Normalise one rung; return (x, method actually used, scale, offset).

    ``x * scale + offset == raw``. "reference" uses the largest value within 3 points of
    the reference peak's position in this rung, and falls back to "max" where that is not
    positive; "area" uses sum(|raw|) where sum(raw) is not positive.
    """
    name = NORM_METHODS[method]
    scale, offset = 1.0, 0.0
    if name == "reference":
        idx = np.arange(-3, 4) + int(round(ref_pos))
        scale = float(raw[idx % raw.size].max())
        if scale <= 0:
            method, name = NORM_METHODS.index("max"), "max"
    if name == "max":
        scale = float(raw.max())
    elif name == "area":
        scale = float(raw.sum())
        if scale <= 0:
            scale = float(np.abs(raw).sum())
    elif name == "zscore":
        offset, scale = float(raw.mean()), float(raw.std())
    return ((raw - offset) / scale).astype(np.float32), method, scale, offset


@dataclass
class _NoiseFree:
    """The noise-free part of a sample, truth units (tallest non-solvent peak = 1)."""

    fid: np.ndarray  # [n_regions, td] processed FID of the lines, one row per region
    base_coef: np.ndarray  # FID points 0..order of the baseline distortion
    truth: np.ndarray  # [L] lines + baseline, un-drifted
    truth_peaks: np.ndarray  # [L] lines only
    tallest: int  # point of the tallest non-solvent peak
    baseline_max: float


def _processing_window(acq: _Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Window applied to the acquired FID (apodization, first point halved), and that
    window times the Gaussian decay shared by all lines (their common envelope)."""
    t = np.arange(acq.td) / acq.sw_hz
    window = np.exp(-np.pi * acq.lb_hz * t)
    window[0] *= 0.5
    envelope = window * np.exp(-((np.pi * acq.gauss_hz * t) ** 2) / (4 * np.log(2)))
    return window, envelope


def _line_fids(lines: _Lines, acq: _Acquisition, envelope: np.ndarray, region: np.ndarray,
               n_regions: int) -> dict[int, np.ndarray]:
    """Processed noise-free FID of each kind of line, [n_regions, td] per kind.

    Main lines keep their relative areas. Weak and solvent lines carry target heights,
    so their amplitudes are divided by their height at resonance (the sum of their decay).
    Every line gets the phase error of its frequency.
    """
    log_ratio = (-np.pi * lines.lorentz_hz - 2j * np.pi * lines.freq_hz) / acq.sw_hz
    amp = lines.amp.copy()
    by_height = lines.kind != _MAIN
    amp[by_height] /= _decay_sums(envelope, log_ratio[by_height].real)
    phase = np.deg2rad(acq.phase0_deg) + np.deg2rad(acq.phase1_deg) * lines.freq_hz / acq.sw_hz
    amp = amp * np.exp(1j * phase)
    out = {}
    for kind in (_MAIN, _WEAK, _SOLVENT):
        out[kind] = np.zeros((n_regions, acq.td), dtype=np.complex128)
        for g in range(n_regions):
            sel = (lines.kind == kind) & (region == g)
            if sel.any():
                out[kind][g] = _damped_sum(amp[sel], log_ratio[sel], acq.td) * envelope
    return out


def _noise_free(rng: np.random.Generator, cfg: _Config, lines: _Lines,
                fids: dict[int, np.ndarray]) -> _NoiseFree:
    """Scale the line FIDs to truth units and add the baseline distortion.

    Weak peaks are sized against the main lines' tallest peak and rung 0's requested noise
    (``weak_height`` noise stds); the solvent FID already has its height in truth units.
    """
    L = cfg.length
    spec_main = _spectrum(fids[_MAIN].sum(axis=0), L)
    weak_scale = spec_main.max() / cfg.snr
    spec_nonsolvent = spec_main
    if lines.n_weak:
        spec_nonsolvent = spec_main + weak_scale * _spectrum(fids[_WEAK].sum(axis=0), L)
    height = spec_nonsolvent.max()
    fid = (fids[_MAIN] + weak_scale * fids[_WEAK]) / height + fids[_SOLVENT]
    truth_peaks = spec_nonsolvent / height
    if np.isfinite(lines.solvent_ppm):
        truth_peaks = truth_peaks + _spectrum(fids[_SOLVENT].sum(axis=0), L)
    base_coef, baseline, base_max = _baseline(rng, cfg)
    return _NoiseFree(fid=fid, base_coef=base_coef, truth=truth_peaks + baseline,
                      truth_peaks=truth_peaks, tallest=int(np.argmax(spec_nonsolvent)),
                      baseline_max=base_max)


def _draw_drift(rng: np.random.Generator, cfg: _Config, n_regions: int):
    """Global shift per rung [R], and the shift of each region [R, G] (points)."""
    o, R = cfg.opts, cfg.rungs
    shifts = rng.uniform(-o.max_drift, o.max_drift, size=R)
    region_shifts = np.repeat(shifts[:, None], cfg.n_regions_max, axis=1)
    if n_regions > 1:
        offsets = rng.uniform(-o.region_drift, o.region_drift, size=(R, n_regions))
        region_shifts[:, :n_regions] += offsets
    return shifts, region_shifts


def _draw_snr(rng: np.random.Generator, cfg: _Config) -> tuple[float, np.ndarray]:
    """T of the sample and the SNR of each rung, S T^k (1 + jitter)."""
    T = float(cfg.T) if isinstance(cfg.T, float) else rng.uniform(*cfg.T)
    jitter = rng.uniform(-cfg.opts.snr_jitter, cfg.opts.snr_jitter, size=cfg.rungs)
    return T, cfg.snr * T ** np.arange(cfg.rungs) * (1.0 + jitter)


def _acquire_rungs(rng: np.random.Generator, cfg: _Config, nf: _NoiseFree, window: np.ndarray,
                   shifts: np.ndarray, region_shifts: np.ndarray, sigma: np.ndarray):
    """Real spectra of all rungs [R, L] (and their noise-free part, or None).

    The shared noise-free FID goes under each rung's phase ramp (per region), the baseline
    points under the global one; then complex white noise, windowed like the acquired FID,
    with E|n|^2 = s^2 chosen so that the real-part std is sigma: var = s^2 sum(w^2) / 2.
    """
    L, n_regions, td = cfg.length, nf.fid.shape[0], nf.fid.shape[1]
    ramps = _ramp(region_shifts[:, :n_regions], L, td).reshape(cfg.rungs, n_regions, td)
    h = ramps[:, 0] * nf.fid[0]
    for g in range(1, n_regions):
        h += ramps[:, g] * nf.fid[g]
    h[:, : nf.base_coef.size] += _ramp(shifts, L, nf.base_coef.size) * nf.base_coef
    clean = _real_fft(h, L) if cfg.opts.keep_clean else None
    s = sigma * math.sqrt(2.0 / np.sum(window**2))
    noise = rng.standard_normal((cfg.rungs, td, 2)).view(np.complex128)[..., 0]  # E|n|^2 = 2
    h += noise * ((s[:, None] / math.sqrt(2.0)) * window)
    return _real_fft(h, L), clean


def _simulate_sample(index: int, cfg: _Config) -> dict[str, Any]:
    """Simulate ladder ``index`` of the data set; its own generator makes it reproducible.

    Returns a dict of the per-sample arrays (see :class:`Ladders`) and ``acq`` scalars.
    """
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(index,)))
    L, R = cfg.length, cfg.rungs
    acq = _draw_acquisition(rng, cfg)
    lines = _draw_lines(rng, cfg, acq)
    lw_floor = _apply_decay_floor(lines, acq, cfg.opts.min_decay)
    window, envelope = _processing_window(acq)

    # Line positions in points of the un-drifted frame, and their drift regions.
    pos = L / 2 - lines.freq_hz * L / acq.sw_hz
    edges = _draw_regions(rng, cfg, pos, lines)
    n_regions = edges.size - 1
    region = np.searchsorted(edges[1:-1], pos, side="right")

    nf = _noise_free(rng, cfg, lines, _line_fids(lines, acq, envelope, region, n_regions))
    shifts, region_shifts = _draw_drift(rng, cfg, n_regions)
    T, snr = _draw_snr(rng, cfg)
    sigma = 1.0 / snr  # truth units
    raw, clean = _acquire_rungs(rng, cfg, nf, window, shifts, region_shifts, sigma)

    # Normalise each rung; "reference" looks for the reference singlet (else the tallest
    # non-solvent peak) where the rung's drift has moved it.
    choices = np.asarray(cfg.norm_choices)
    methods = choices[rng.integers(choices.size, size=R)]
    if np.isfinite(lines.reference_ppm):
        ref_pos = L / 2 - (lines.reference_ppm - acq.carrier_ppm) * acq.mhz * L / acq.sw_hz
    else:
        ref_pos = float(nf.tallest)
    ref_region = int(np.searchsorted(edges[1:-1], ref_pos, side="right"))
    x = np.empty((R, L), dtype=np.float32)
    norm_method = np.empty(R, dtype=np.int8)
    norm_scale, norm_offset = np.empty(R), np.empty(R)
    for k in range(R):
        pos_k = ref_pos + region_shifts[k, ref_region]
        x[k], norm_method[k], norm_scale[k], norm_offset[k] = _normalise(raw[k], methods[k], pos_k)

    out = {
        "x": x,
        "truth": nf.truth.astype(np.float32),
        "truth_peaks": nf.truth_peaks.astype(np.float32),
        "shifts": shifts,
        "region_shifts": region_shifts,
        "region_edges": np.concatenate([edges, np.full(cfg.n_regions_max + 1 - edges.size, L)]),
        "T": T,
        "snr": snr,
        "noise_sigma": sigma,
        "norm_method": norm_method,
        "norm_scale": norm_scale,
        "norm_offset": norm_offset,
        "acq": {
            "nucleus": cfg.opts.nucleus,
            "spectrometer_mhz": acq.spectrometer_mhz,
            "mhz": acq.mhz,
            "sw_ppm": acq.sw_ppm,
            "sw_hz": acq.sw_hz,
            "carrier_ppm": acq.carrier_ppm,
            "ppm0": acq.carrier_ppm + acq.sw_ppm / 2,
            "td": acq.td,
            "zero_fill": cfg.opts.zero_fill,
            "aq_s": acq.aq_s,
            "lineshape": acq.lineshape,
            "lw_hz": acq.lw_hz,
            "gauss_hz": acq.gauss_hz,
            "lw_floor_hz": lw_floor,
            "lb_hz": acq.lb_hz,
            "phase0_deg": acq.phase0_deg,
            "phase1_deg": acq.phase1_deg,
            "baseline_max": nf.baseline_max,
            "solvent_ppm": lines.solvent_ppm,
            "solvent_height": lines.solvent_height,
            "reference_ppm": lines.reference_ppm,
            "ref_peak_index": ref_pos,
            "n_multiplets": lines.n_multiplets,
            "n_weak": lines.n_weak,
            "n_lines": lines.freq_hz.size,
            "n_regions": n_regions,
        },
    }
    if clean is not None:
        out["clean"] = clean.astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# the data set
# --------------------------------------------------------------------------------------------

#: Per-sample acquisition fields of ``Ladders.acq`` (and of the HDF5 group ``acq``).
ACQ_FIELDS: dict[str, tuple[str, str]] = {
    "nucleus": ("U8", "observed nucleus: 1H, 13C or 19F"),
    "spectrometer_mhz": ("f8", "spectrometer 1H frequency, MHz"),
    "mhz": ("f8", "observe frequency of the nucleus, MHz (Hz per ppm)"),
    "sw_ppm": ("f8", "spectral width, ppm"),
    "sw_hz": ("f8", "spectral width, Hz"),
    "carrier_ppm": ("f8", "carrier, ppm (point L // 2)"),
    "ppm0": ("f8", "ppm of point 0 (the highest ppm)"),
    "td": ("i8", "acquired complex FID points (length // zero_fill)"),
    "zero_fill": ("i8", "zero-filling factor"),
    "aq_s": ("f8", "acquisition time, s"),
    "lineshape": ("U12", "lorentzian, gaussian or voigt"),
    "lw_hz": ("f8", "drawn line width (FWHM before apodization), Hz"),
    "gauss_hz": ("f8", "Gaussian FWHM shared by all lines, Hz (0: none)"),
    "lw_floor_hz": ("f8", "Lorentzian floor imposed by min_decay, Hz"),
    "lb_hz": ("f8", "exponential apodization, Hz (0: none)"),
    "phase0_deg": ("f8", "zero-order phase error, degrees"),
    "phase1_deg": ("f8", "first-order phase error over the whole width, pivot at carrier, deg"),
    "baseline_max": ("f8", "largest |baseline distortion|, truth units"),
    "solvent_ppm": ("f8", "solvent line position, ppm (NaN: none)"),
    "solvent_height": ("f8", "solvent height over the tallest other peak (NaN: none)"),
    "reference_ppm": ("f8", "reference singlet position, ppm (NaN: none)"),
    "ref_peak_index": ("f8", "point (un-drifted) of the peak used by 'reference' normalisation"),
    "n_multiplets": ("i8", "number of multiplets (13C: singlets)"),
    "n_weak": ("i8", "number of weak peaks near the noise floor"),
    "n_lines": ("i8", "number of lines in all"),
    "n_regions": ("i8", "drift regions (1: global drift only)"),
}


@dataclass
class Ladders:
    """A batch of simulated SNR ladders.

    Attributes
    ----------
    x : float32 [N, R, L]
        Normalised rungs; rung 0 has the lowest SNR.
    truth : float32 [N, L]
        Noise-free real spectrum, un-drifted frame, truth units (the tallest non-solvent
        peak has height 1); includes the phase errors and the baseline distortion.
    truth_peaks : float32 [N, L]
        The same, lines only (no baseline distortion; the solvent included).
    shifts : float64 [N, R]
        Global drift of each rung, points (``shifted[i] = x[i - d]``).
    region_shifts : float64 [N, R, G]
        Drift of each region, points; ``G = 1`` and ``region_shifts[..., 0] == shifts``
        without non-linear drift. Unused regions repeat the global shift.
    region_edges : int64 [N, G + 1]
        Region g covers points ``[edges[g], edges[g + 1])`` of the un-drifted frame;
        unused trailing edges equal L.
    T : float64 [N]
        SNR ratio per rung used for the sample.
    snr : float64 [N, R]
        SNR of each rung under ``SNR_CONVENTION`` (``S * T**k * (1 + jitter)``).
    noise_sigma : float64 [N, R]
        Real-part noise std, truth units (``1 / snr``).
    norm_method : int8 [N, R]
        Index into ``NORM_METHODS``.
    norm_scale, norm_offset : float64 [N, R]
        ``x * norm_scale + norm_offset`` = rung content in truth units.
    acq : dict of str -> array [N]
        Acquisition parameters, see ``ACQ_FIELDS``.
    meta : dict
        seed, options, version, format_version, conventions, description.
    clean : float32 [N, R, L] or None
        Noise-free content of each rung (option ``keep_clean``).
    """

    x: np.ndarray
    truth: np.ndarray
    truth_peaks: np.ndarray
    shifts: np.ndarray
    region_shifts: np.ndarray
    region_edges: np.ndarray
    T: np.ndarray
    snr: np.ndarray
    noise_sigma: np.ndarray
    norm_method: np.ndarray
    norm_scale: np.ndarray
    norm_offset: np.ndarray
    acq: dict[str, np.ndarray]
    meta: dict[str, Any]
    clean: np.ndarray | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def rungs(self) -> int:
        return self.x.shape[1]

    @property
    def length(self) -> int:
        return self.x.shape[2]

    @property
    def norm_names(self) -> np.ndarray:
        """Normalisation names, [N, R] str."""
        return np.asarray(NORM_METHODS)[self.norm_method]

    def ppm_axis(self, i: int) -> np.ndarray:
        """ppm of every point of sample i (float64 [L], decreasing with index)."""
        return self.acq["ppm0"][i] - np.arange(self.length) * (self.acq["sw_ppm"][i] / self.length)

    def denormalised(self, i: int) -> np.ndarray:
        """Rungs of sample i in truth units, float64 [R, L]: shifted truth + noise."""
        return self.x[i] * self.norm_scale[i][:, None] + self.norm_offset[i][:, None]

    def shifted_truth(self, i: int) -> np.ndarray:
        """Noise-free content of each rung of sample i, float64 [R, L], truth units.

        ``clean`` where kept; else the Fourier shift of the truth by each rung's drift (exact
        for global drift with zero_fill >= 2). For a non-linear drift without ``clean``,
        each region of the lines is shifted on its own, which is exact but for the line
        tails that cross a region edge.
        """
        if self.clean is not None:
            return self.clean[i].astype(np.float64)
        truth = self.truth[i].astype(np.float64)
        n_regions = int(self.acq["n_regions"][i])
        if n_regions == 1:
            return np.stack([fourier_shift_real(truth, d) for d in self.shifts[i]])
        peaks = self.truth_peaks[i].astype(np.float64)
        edges = self.region_edges[i]
        out = np.stack([fourier_shift_real(truth - peaks, d) for d in self.shifts[i]])
        for g in range(n_regions):
            part = np.zeros_like(peaks)
            part[edges[g]:edges[g + 1]] = peaks[edges[g]:edges[g + 1]]
            out += np.stack([fourier_shift_real(part, d) for d in self.region_shifts[i, :, g]])
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write to HDF5 atomically (temporary file in the same folder, then rename)."""
        with _atomic_h5(path) as f:
            writer = _Writer(f, len(self), self.rungs, self.length, self.region_shifts.shape[2],
                             self.clean is not None, self.meta)
            writer.write(0, _as_arrays(self))
        return Path(path)


def fourier_shift_real(x: np.ndarray, d: float) -> np.ndarray:
    """Band-limited circular shift of a real vector by d points: ``out[i] = x[i - d]``."""
    n = x.size
    spec = np.fft.rfft(x) * np.exp(-2j * np.pi * np.arange(n // 2 + 1) * d / n)
    return np.fft.irfft(spec, n=n)


def _meta(cfg: _Config) -> dict[str, Any]:
    """Description of a data set; options as JSON types so that a file round-trips exactly."""
    options = json.loads(json.dumps(asdict(cfg.opts)))
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "nmrladder_version": __version__,
        "seed": cfg.seed,
        "rungs": cfg.rungs,
        "length": cfg.length,
        "T": list(cfg.T) if isinstance(cfg.T, tuple) else cfg.T,
        "snr": cfg.snr,
        "options": options,
        "snr_convention": SNR_CONVENTION,
        "shift_convention": SHIFT_CONVENTION,
        "orientation": ORIENTATION,
        "norm_methods": list(NORM_METHODS),
        "first_point_halving": True,
        "description": DESCRIPTION,
    }


def _array_specs(R: int, L: int, G: int, keep_clean: bool) -> dict[str, tuple[tuple, str]]:
    """Per-sample shape and dtype of every array of a data set."""
    specs = {
        "x": ((R, L), "f4"),
        "truth": ((L,), "f4"),
        "truth_peaks": ((L,), "f4"),
        "shifts": ((R,), "f8"),
        "region_shifts": ((R, G), "f8"),
        "region_edges": ((G + 1,), "i8"),
        "T": ((), "f8"),
        "snr": ((R,), "f8"),
        "noise_sigma": ((R,), "f8"),
        "norm_method": ((R,), "i1"),
        "norm_scale": ((R,), "f8"),
        "norm_offset": ((R,), "f8"),
    }
    if keep_clean:
        specs["clean"] = ((R, L), "f4")
    return specs


def _stack(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack per-sample dicts into arrays [N, ...], acq fields into arrays [N]."""
    arrays = {k: np.stack([s[k] for s in samples]) for k in samples[0] if k != "acq"}
    arrays["acq"] = {
        k: np.array([s["acq"][k] for s in samples], dtype=dtype)
        for k, (dtype, _) in ACQ_FIELDS.items()
    }
    return arrays


def _as_arrays(ladders: Ladders) -> dict[str, Any]:
    """The arrays of a Ladders as the writer takes them."""
    arrays = {f.name: getattr(ladders, f.name) for f in fields(Ladders) if f.name != "meta"}
    if arrays["clean"] is None:
        del arrays["clean"]
    return arrays


def _from_arrays(arrays: dict[str, Any], meta: dict[str, Any]) -> Ladders:
    arrays = dict(arrays)
    arrays.setdefault("clean", None)
    return Ladders(meta=meta, **arrays)


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def _sample_chunks(cfg: _Config, chunk: int, workers: int) -> Iterator[tuple[int, list[dict]]]:
    """Yield (start, samples) chunk by chunk; the next chunk is computed meanwhile.

    Threads suffice: the heavy work (FFT, BLAS, ufuncs) releases the GIL. At most two
    chunks are held in memory.
    """
    starts = list(range(0, cfg.n, chunk))
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(start: int) -> list[Future]:
            return [pool.submit(_simulate_sample, i, cfg)
                    for i in range(start, min(start + chunk, cfg.n))]

        pending = submit(starts[0])
        for c, start in enumerate(starts):
            upcoming = submit(starts[c + 1]) if c + 1 < len(starts) else []
            yield start, [f.result() for f in pending]
            pending = upcoming


def simulate_ladders(
    n: int,
    rungs: int,
    length: int,
    T: float | tuple[float, float],
    snr: float,
    seed: int,
    *,
    workers: int = 1,
    **options: Any,
) -> Ladders:
    """Simulate n SNR ladders in memory.

    Parameters
    ----------
    n : int
        Number of samples (ladders).
    rungs : int
        Rungs per ladder, R >= 2.
    length : int
        Points per spectrum, L >= 256 (after zero-filling).
    T : float or (float, float)
        SNR ratio between consecutive rungs, > 1; a (lo, hi) pair draws it per sample.
    snr : float
        Requested SNR S of rung 0 (``SNR_CONVENTION``); rung k gets ``S * T**k * (1 + jitter)``.
    seed : int
        Sample i uses ``np.random.SeedSequence(seed, spawn_key=(i,))``, so the result does
        not depend on ``workers``.
    workers : int
        Threads.
    **options
        See :class:`SimOptions`.

    Returns
    -------
    Ladders

    Raises
    ------
    InputError
        For a bad argument or option; the message names it.
    """
    cfg = _make_config(n, rungs, length, T, snr, seed, options)
    workers = _check_workers(workers)
    samples = [s for _, chunk in _sample_chunks(cfg, max(1, cfg.n), workers) for s in chunk]
    return _from_arrays(_stack(samples), _meta(cfg))


def simulate_to_file(
    path: str | os.PathLike,
    n: int,
    rungs: int,
    length: int,
    T: float | tuple[float, float],
    snr: float,
    seed: int,
    *,
    chunk: int = 64,
    workers: int = 2,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Simulate n ladders straight to an HDF5 file, chunk by chunk (bounded memory).

    Same arguments and options as :func:`simulate_ladders`; the file holds exactly what
    ``simulate_ladders(...).save(path)`` would, whatever ``chunk`` and ``workers``. The file
    appears complete or not at all (temporary name, then rename). Returns the path.
    """
    cfg = _make_config(n, rungs, length, T, snr, seed, options)
    workers = _check_workers(workers)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"option chunk: must be an integer >= 1, got {chunk!r}")
    from tqdm.auto import tqdm

    with _atomic_h5(path) as f, tqdm(
        total=cfg.n, unit="ladder", desc="simulate", disable=not progress
    ) as bar:
        writer = _Writer(f, cfg.n, cfg.rungs, cfg.length, cfg.n_regions_max,
                         cfg.opts.keep_clean, _meta(cfg))
        for start, samples in _sample_chunks(cfg, int(chunk), workers):
            writer.write(start, _stack(samples))
            bar.update(len(samples))
    return Path(path)


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"option workers: must be an integer >= 1, got {workers!r}")
    return int(workers)


# --------------------------------------------------------------------------------------------
# HDF5
# --------------------------------------------------------------------------------------------

_JSON_ATTRS = ("options", "norm_methods", "T")
# Spectra: one sample per chunk, so reading any sample touches one chunk.
_PER_SAMPLE_CHUNKS = ("x", "truth", "truth_peaks", "clean")


@contextlib.contextmanager
def _atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """An HDF5 file written at a temporary name beside path, renamed to path on success."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def _early_allocation() -> h5py.h5p.PropDCID:
    """Dataset creation properties that place every chunk when the dataset is created.

    The file layout then does not depend on the order of the writes (chunk size, workers),
    so the same seed gives the same bytes; no fill value is written, the data overwrite it.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


class _Writer:
    """Creates the datasets of a ladder file and writes slices of samples into them.

    Large arrays are chunked one sample per chunk (random access per sample); the small
    per-sample arrays in chunks of up to 4096 samples.
    """

    def __init__(self, f: h5py.File, n: int, R: int, L: int, G: int, keep_clean: bool,
                 meta: dict[str, Any]):
        self.f = f
        for key, value in meta.items():
            f.attrs[key] = json.dumps(value) if key in _JSON_ATTRS else value
        for name, (shape, dtype) in _array_specs(R, L, G, keep_clean).items():
            rows = 1 if name in _PER_SAMPLE_CHUNKS else min(n, 4096)
            f.create_dataset(name, shape=(n, *shape), dtype=dtype, chunks=(rows, *shape),
                             track_times=False, dcpl=_early_allocation())
        f["x"].attrs["axes"] = "sample, rung, point"
        f["norm_method"].attrs["names"] = json.dumps(list(NORM_METHODS))
        acq = f.create_group("acq", track_order=False)
        for name, (dtype, doc) in ACQ_FIELDS.items():
            h5_dtype = dtype.replace("U", "S")
            acq.create_dataset(name, shape=(n,), dtype=h5_dtype, chunks=(min(n, 4096),),
                               track_times=False, dcpl=_early_allocation())
            acq[name].attrs["description"] = doc

    def write(self, start: int, arrays: dict[str, Any]) -> None:
        stop = start + len(arrays["x"])
        for name, value in arrays.items():
            if name == "acq":
                for key, column in value.items():
                    if column.dtype.kind == "U":
                        column = np.char.encode(column, "ascii")
                    self.f["acq"][key][start:stop] = column
            else:
                self.f[name][start:stop] = value


class LadderFile:
    """A ladder file opened lazily; read samples by slice or index without loading it all.

    Use as a context manager::

        with open_ladders("ladders.h5") as lf:
            for batch in lf.iter_batches(256):
                ...
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as err:
            raise InputError(f"{self.path}: cannot open as HDF5 ({err})") from None
        if self.file.attrs.get("format") != FORMAT_NAME:
            self.file.close()
            raise InputError(f"{self.path}: not a nmrladder ladder file (attribute 'format')")
        version = int(self.file.attrs["format_version"])
        if version > FORMAT_VERSION:
            self.file.close()
            raise InputError(
                f"{self.path}: format_version {version} is newer than this nmrladder reads "
                f"({FORMAT_VERSION}); upgrade nmrladder"
            )
        attrs = self.file.attrs
        self.meta = {k: json.loads(v) if k in _JSON_ATTRS else _plain(v) for k, v in attrs.items()}

    def __enter__(self) -> LadderFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def __len__(self) -> int:
        return self.file["x"].shape[0]

    @property
    def rungs(self) -> int:
        return self.file["x"].shape[1]

    @property
    def length(self) -> int:
        return self.file["x"].shape[2]

    def read(self, sel: int | slice | Sequence[int] | np.ndarray = slice(None)) -> Ladders:
        """Read the samples selected by an index, a slice or an index array (any order)."""
        n = len(self)
        if isinstance(sel, slice):
            key, inverse = sel, None
        else:
            idx = np.atleast_1d(np.asarray(sel))
            if idx.dtype.kind not in "iu" or idx.ndim != 1:
                raise InputError(f"{self.path}: read() takes an index, a slice or 1-D indices")
            idx = np.where(idx < 0, idx + n, idx)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise InputError(f"{self.path}: index out of range for {n} samples")
            # h5py wants increasing unique indices: read those, then restore the order.
            key, inverse = np.unique(idx, return_inverse=True)
        arrays: dict[str, Any] = {}
        for name in self.file:
            if name == "acq":
                arrays["acq"] = {k: _decode(self.file["acq"][k][key], ACQ_FIELDS[k][0])
                                 for k in self.file["acq"] if k in ACQ_FIELDS}
            else:
                arrays[name] = self.file[name][key]
        if inverse is not None:
            arrays = {k: ({kk: vv[inverse] for kk, vv in v.items()} if k == "acq" else v[inverse])
                      for k, v in arrays.items()}
        return _from_arrays(arrays, dict(self.meta))

    def iter_batches(self, batch_size: int) -> Iterator[Ladders]:
        """Consecutive batches of at most batch_size samples."""
        if batch_size < 1:
            raise InputError(f"option batch_size: must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.read(slice(start, min(start + batch_size, len(self))))


def _decode(values: np.ndarray, dtype: str) -> np.ndarray:
    return values.astype(dtype) if dtype.startswith("U") else values


def _plain(value: Any) -> Any:
    """HDF5 attribute -> plain Python (numpy scalars and bools unwrapped)."""
    return value.item() if isinstance(value, np.generic) else value


def open_ladders(path: str | os.PathLike) -> LadderFile:
    """Open a ladder file lazily (context manager; ``len``, ``read``, ``iter_batches``)."""
    return LadderFile(path)


def load_ladders(path: str | os.PathLike) -> Ladders:
    """Read a whole ladder file into memory."""
    with open_ladders(path) as lf:
        return lf.read(slice(None))
