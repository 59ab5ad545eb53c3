"""One simulated ladder: acquisition, the noise-free FID of its lines, the rungs (drift,
noise, normalisation), and the structure-known oracle's fit of rung 0."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nmrladder.train.sim.lines import (
    MAIN,
    SOLVENT,
    WEAK,
    Lines,
    apply_decay_floor,
    draw_lines,
    draw_regions,
)
from nmrladder.train.sim.options import LARMOR_RATIO, LINESHAPES, NORM_METHODS, SimConfig
from nmrladder.train.sim.signal import damped_sum, decay_sums, powers, ramp, real_fft, spectrum

__all__ = ["simulate_sample"]


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


def _draw_acquisition(rng: np.random.Generator, cfg: SimConfig) -> _Acquisition:
    """Spectrometer, spectral window, lineshape, apodization and phase errors of a sample."""
    o = cfg.opts
    spectrometer_mhz = rng.uniform(*o.mhz_range)
    mhz = spectrometer_mhz * LARMOR_RATIO[o.nucleus]
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


def _baseline(rng: np.random.Generator, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray, float]:
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
    shape = spectrum(coef, L)
    scale = target / np.abs(shape).max()
    return coef * scale, shape * scale, target


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


def _line_fids(lines: Lines, acq: _Acquisition, envelope: np.ndarray, region: np.ndarray,
               n_regions: int) -> dict[int, np.ndarray]:
    """Processed noise-free FID of each kind of line, [n_regions, td] per kind.

    Main lines keep their relative areas. Weak and solvent lines carry target heights,
    so their amplitudes are divided by their height at resonance (the sum of their decay).
    Every line gets the phase error of its frequency.
    """
    log_ratio = (-np.pi * lines.lorentz_hz - 2j * np.pi * lines.freq_hz) / acq.sw_hz
    amp = lines.amp.copy()
    by_height = lines.kind != MAIN
    amp[by_height] /= decay_sums(envelope, log_ratio[by_height].real)
    phase = np.deg2rad(acq.phase0_deg) + np.deg2rad(acq.phase1_deg) * lines.freq_hz / acq.sw_hz
    amp = amp * np.exp(1j * phase)
    out = {}
    for kind in (MAIN, WEAK, SOLVENT):
        out[kind] = np.zeros((n_regions, acq.td), dtype=np.complex128)
        for g in range(n_regions):
            sel = (lines.kind == kind) & (region == g)
            if sel.any():
                out[kind][g] = damped_sum(amp[sel], log_ratio[sel], acq.td) * envelope
    return out


def _noise_free(rng: np.random.Generator, cfg: SimConfig, lines: Lines,
                fids: dict[int, np.ndarray]) -> _NoiseFree:
    """Scale the line FIDs to truth units and add the baseline distortion.

    Weak peaks are sized against the main lines' tallest peak and rung 0's requested noise
    (``weak_height`` noise stds); the solvent FID already has its height in truth units.
    """
    L = cfg.length
    spec_main = spectrum(fids[MAIN].sum(axis=0), L)
    weak_scale = spec_main.max() / cfg.snr
    spec_nonsolvent = spec_main
    if lines.n_weak:
        spec_nonsolvent = spec_main + weak_scale * spectrum(fids[WEAK].sum(axis=0), L)
    height = spec_nonsolvent.max()
    fid = (fids[MAIN] + weak_scale * fids[WEAK]) / height + fids[SOLVENT]
    truth_peaks = spec_nonsolvent / height
    if np.isfinite(lines.solvent_ppm):
        truth_peaks = truth_peaks + spectrum(fids[SOLVENT].sum(axis=0), L)
    base_coef, baseline, base_max = _baseline(rng, cfg)
    return _NoiseFree(fid=fid, base_coef=base_coef, truth=truth_peaks + baseline,
                      truth_peaks=truth_peaks, tallest=int(np.argmax(spec_nonsolvent)),
                      baseline_max=base_max)


def _draw_drift(rng: np.random.Generator, cfg: SimConfig, n_regions: int):
    """Global shift per rung [R], and the shift of each region [R, G] (points)."""
    o, R = cfg.opts, cfg.rungs
    shifts = rng.uniform(-o.max_drift, o.max_drift, size=R)
    region_shifts = np.repeat(shifts[:, None], cfg.n_regions_max, axis=1)
    if n_regions > 1:
        offsets = rng.uniform(-o.region_drift, o.region_drift, size=(R, n_regions))
        region_shifts[:, :n_regions] += offsets
    return shifts, region_shifts


def _draw_snr(rng: np.random.Generator, cfg: SimConfig) -> tuple[float, np.ndarray]:
    """T of the sample and the SNR of each rung, S T^k (1 + jitter)."""
    T = float(cfg.T) if isinstance(cfg.T, float) else rng.uniform(*cfg.T)
    jitter = rng.uniform(-cfg.opts.snr_jitter, cfg.opts.snr_jitter, size=cfg.rungs)
    return T, cfg.snr * T ** np.arange(cfg.rungs) * (1.0 + jitter)


def _acquire_rungs(rng: np.random.Generator, cfg: SimConfig, nf: _NoiseFree, window: np.ndarray,
                   shifts: np.ndarray, region_shifts: np.ndarray, sigma: np.ndarray):
    """Real spectra of all rungs [R, L] (and their noise-free part, or None).

    The shared noise-free FID goes under each rung's phase ramp (per region), the baseline
    points under the global one; then complex white noise, windowed like the acquired FID,
    with E|n|^2 = s^2 chosen so that the real-part std is sigma: var = s^2 sum(w^2) / 2.
    """
    L, n_regions, td = cfg.length, nf.fid.shape[0], nf.fid.shape[1]
    ramps = ramp(region_shifts[:, :n_regions], L, td).reshape(cfg.rungs, n_regions, td)
    h = ramps[:, 0] * nf.fid[0]
    for g in range(1, n_regions):
        h += ramps[:, g] * nf.fid[g]
    h[:, : nf.base_coef.size] += ramp(shifts, L, nf.base_coef.size) * nf.base_coef
    clean = real_fft(h, L) if cfg.opts.keep_clean else None
    s = sigma * math.sqrt(2.0 / np.sum(window**2))
    noise = rng.standard_normal((cfg.rungs, td, 2)).view(np.complex128)[..., 0]  # E|n|^2 = 2
    h += noise * ((s[:, None] / math.sqrt(2.0)) * window)
    return real_fft(h, L), clean


def simulate_sample(index: int, cfg: SimConfig) -> dict[str, Any]:
    """Simulate ladder ``index`` of the data set; its own generator makes it reproducible.

    Returns a dict of the per-sample arrays (see :class:`Ladders`) and ``acq`` scalars.
    """
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(index,)))
    L, R = cfg.length, cfg.rungs
    acq = _draw_acquisition(rng, cfg)
    lines = draw_lines(rng, cfg, acq)
    lw_floor = apply_decay_floor(lines, acq, cfg.opts.min_decay)
    window, envelope = _processing_window(acq)

    # Line positions in points of the un-drifted frame, and their drift regions.
    pos = L / 2 - lines.freq_hz * L / acq.sw_hz
    edges = draw_regions(rng, cfg, pos, lines)
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
            "family": cfg.opts.family or "",
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
    if cfg.opts.keep_oracle:
        out["oracle"] = oracle_fit(lines, acq, envelope, region, region_shifts[0], nf.base_coef,
                                   shifts[0], raw[0], L).astype(np.float32)
    return out


def oracle_fit(lines: Lines, acq: _Acquisition, envelope: np.ndarray, region: np.ndarray,
               region_shift: np.ndarray, base_coef: np.ndarray, shift: float, noisy: np.ndarray,
               length: int) -> np.ndarray:
    """The structure-known oracle: the least-squares fit of a rung (truth units) by the
    spectrum of every multiplet (chemical group), its lines at their known positions (the
    rung's drift included), widths, relative intensities, phase and processing, with one free
    real amplitude per multiplet (per weak line, one for the solvent's lines), plus the
    baseline's FID points.

    What it cannot know is what the noise hides: the amplitudes. It is the ceiling a
    denoiser that knew the sample's line structure could reach, far above detection-based
    ones (a free amplitude per line instead would spend a parameter on each of the hundreds
    of small second-order lines of a strongly coupled system, and sit lower).
    """
    log_ratio = (-np.pi * lines.lorentz_hz - 2j * np.pi * lines.freq_hz) / acq.sw_hz
    phase = np.deg2rad(acq.phase0_deg) + np.deg2rad(acq.phase1_deg) * lines.freq_hz / acq.sw_hz
    amp = lines.amp.copy()
    by_height = lines.kind != MAIN  # as _line_fids: weak and solvent lines carry heights
    amp[by_height] /= decay_sums(envelope, log_ratio[by_height].real)
    line_ramp = ramp(region_shift[region], length, acq.td)  # [n_lines, td]
    line_fids = (amp * np.exp(1j * phase))[:, None] * powers(log_ratio, acq.td)
    line_fids *= envelope * line_ramp
    keys = np.stack([lines.kind, lines.group], axis=1)
    _, column = np.unique(keys, axis=0, return_inverse=True)
    fids = np.zeros((int(column.max()) + 1, acq.td), dtype=np.complex128)
    np.add.at(fids, column.ravel(), line_fids)
    n_base = base_coef.size if np.any(base_coef) else 0
    if n_base:  # the baseline: real and imaginary part of each distorted FID point
        points = np.zeros((2 * n_base, acq.td), dtype=np.complex128)
        global_ramp = ramp(np.array([shift]), length, n_base)[0]
        for p in range(n_base):
            points[2 * p, p] = global_ramp[p]
            points[2 * p + 1, p] = 1j * global_ramp[p]
        fids = np.concatenate([fids, points])
    basis = real_fft(fids, length)  # [n_columns, L]
    # The normal equations are a few hundred columns square: far cheaper than an SVD of the
    # [L, columns] system; lstsq on them gives the minimum-norm solution where lines coincide.
    coef, *_ = np.linalg.lstsq(basis @ basis.T, basis @ noisy, rcond=None)
    return coef @ basis
