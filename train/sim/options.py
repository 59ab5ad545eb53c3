"""Options of the simulator: SimOptions, their validation, the legacy per-nucleus presets and
the families' presets (``families``), and the data set's configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.train.sim.families import FAMILIES
from nmrladder.train.sim.multiplets import MULTIPLET_PARTNERS

#: Normalisation names; ``norm_method`` stores the index into this tuple.
NORM_METHODS = ("none", "max", "area", "zscore", "reference")
#: What ``normalisation="random"`` draws from, per rung.
RANDOM_NORM_METHODS = ("max", "area", "zscore", "reference")
LINESHAPES = ("lorentzian", "gaussian", "voigt")
NUCLEI = ("1H", "13C", "19F")
#: Spectrum families (option ``family``), each with its own module (``family_*``).
FAMILY_NAMES = tuple(FAMILIES)

# Observe frequency of each nucleus per MHz of the spectrometer's 1H frequency.
LARMOR_RATIO = {"1H": 1.0, "13C": 0.25145020, "19F": 0.94094011, "31P": 0.40480742}

# Per-nucleus defaults of the options left at None without a family (the legacy presets the
# shipped model was trained on; a family's preset replaces them).
PRESETS: dict[str, dict[str, Any]] = {
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
    None take the preset of ``family`` or, without a family, of ``nucleus``.

    Attributes
    ----------
    family : str or None
        A spectrum family of ``FAMILY_NAMES`` (1h, 1h-benchtop, 13c, 19f, 31p): its preset and
        its own drawer of lines (spin systems, C-F splittings, ...; docs/simulator.md). Its
        preset lies under every option given explicitly; the nucleus is the family's.
    nucleus : {"1H", "13C", "19F"}
        Without a family, the legacy preset: 1H first-order multiplets with a water line; 13C
        proton-decoupled singlets over ~200-240 ppm with a CDCl3 triplet; 19F multiplets with
        larger couplings over ~100-300 ppm.
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
    keep_oracle : bool
        Also keep ``oracle``: the structure-known least-squares fit of rung 0, [N, L] (for
        test sets: the ceiling of the evaluation).
    """

    family: str | None = None
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
    keep_oracle: bool = False


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
    family = options.get("family")
    if family is not None and family not in FAMILIES:
        raise InputError(f"option family: unknown family {family!r}; choose from {FAMILY_NAMES}")
    if family is not None:
        nucleus = FAMILIES[family].nucleus
        given = options.get("nucleus")
        if given is not None and given != nucleus:
            raise InputError(
                f"option nucleus: {given!r} contradicts family {family!r} (a {nucleus} family)"
            )
        # Keys a family leaves out (the legacy solvent's, unused by families) come from the
        # nucleus' legacy preset, so that every option validates.
        preset = {**PRESETS.get(nucleus, PRESETS["1H"]), **FAMILIES[family].preset,
                  "nucleus": nucleus}
    else:
        nucleus = options.get("nucleus") or "1H"
        if nucleus not in NUCLEI:
            raise InputError(
                f"option nucleus: unknown nucleus {nucleus!r}; choose from {NUCLEI} "
                f"(other nuclei through a family: {FAMILY_NAMES})"
            )
        preset = PRESETS[nucleus]
    # Precedence: explicit option > the family's or nucleus' preset > the SimOptions default.
    o = asdict(SimOptions())
    o.update({k: v for k, v in preset.items() if k in o})
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
    o["keep_oracle"] = bool(o["keep_oracle"])
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
    bad = [k for k in probs if k not in MULTIPLET_PARTNERS]
    total = sum(probs.values())
    if bad or any(p < 0 for p in probs.values()) or total <= 0:
        raise InputError(
            f"option multiplets: need non-negative probabilities of {tuple(MULTIPLET_PARTNERS)}"
            f" with a positive sum, got {value!r}"
        )
    return {k: p / total for k, p in probs.items()}


@dataclass(frozen=True)
class SimConfig:
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


def make_config(n, rungs, length, T, snr, seed, options) -> SimConfig:
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
    return SimConfig(int(n), int(rungs), int(length), T, snr, int(seed), opts)


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
