"""Every line of a sample: the family's (or the legacy first-order multiplets), the
reference singlet, weak lines near the noise floor and the solvent; the decay floor that
keeps FIDs from being truncated, and the regions of a non-linear drift."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nmrladder.train.sim.families import FAMILIES
from nmrladder.train.sim.family import Solvent
from nmrladder.train.sim.multiplets import draw_first_order
from nmrladder.train.sim.options import PRESETS, SimConfig

__all__ = ["MAIN", "SOLVENT", "WEAK", "Lines", "apply_decay_floor", "draw_lines", "draw_regions"]

# Line kinds (which lines count for the SNR reference height, which are solvent).
MAIN, WEAK, SOLVENT = 0, 1, 2


@dataclass
class Lines:
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


def _placement_window(cfg: SimConfig, acq) -> tuple[float, float]:
    """ppm range where lines may sit: peak_ppm inside the window, away from its edges.

    The margin keeps lines clear of the circular wrap of the drift.
    """
    o = cfg.opts
    half = acq.sw_ppm / 2
    margin = max(0.05 * acq.sw_ppm, (o.max_drift + o.region_drift + 16) * acq.sw_ppm / cfg.length)
    lo_win, hi_win = acq.carrier_ppm - half + margin, acq.carrier_ppm + half - margin
    lo, hi = max(o.peak_ppm[0], lo_win), min(o.peak_ppm[1], hi_win)
    return (lo, hi) if lo < hi else (lo_win, hi_win)


def draw_lines(rng: np.random.Generator, cfg: SimConfig, acq) -> Lines:
    """Multiplets, the reference singlet, weak peaks and the solvent of one sample.

    Amplitudes of main lines are relative areas; weak lines carry their target height in
    rung-0 noise stds and the solvent its height over the tallest other peak (both are
    turned into amplitudes once the heights are known).
    """
    o = cfg.opts
    family = FAMILIES[o.family] if o.family else None
    lo, hi = _placement_window(cfg, acq)
    freq, amp, lor, kind, group = [], [], [], [], []
    base_lorentz = acq.voigt_fraction * acq.lw_hz

    def add(hz, a, width, k, g):
        freq.append(np.atleast_1d(hz).astype(np.float64))
        for out, value in ((amp, a), (lor, width), (kind, k), (group, g)):
            out.append(np.broadcast_to(value, freq[-1].shape))

    drawn = family.draw(rng, o, acq, lo, hi, base_lorentz) if family else \
        draw_first_order(rng, o, acq, lo, hi, base_lorentz)
    n_mult = drawn.n_groups
    add(drawn.freq_hz, drawn.amp, drawn.lorentz_hz, MAIN, drawn.group)

    reference_ppm = math.nan
    if rng.random() < o.reference_probability:
        ppm = o.reference_ppm + rng.uniform(-0.02, 0.02)
        if abs(ppm - acq.carrier_ppm) < acq.sw_ppm / 2 * 0.95:
            reference_ppm = ppm
            area = math.exp(rng.uniform(math.log(0.3), math.log(5.0)))
            add((ppm - acq.carrier_ppm) * acq.mhz, area, base_lorentz, MAIN, n_mult)

    n_weak = int(rng.integers(o.weak_peaks[0], o.weak_peaks[1] + 1))
    if n_weak:
        hz = (rng.uniform(lo, hi, size=n_weak) - acq.carrier_ppm) * acq.mhz
        heights = rng.uniform(*o.weak_height, size=n_weak)
        add(hz, heights, base_lorentz, WEAK, n_mult + 1 + np.arange(n_weak))

    solvent_ppm, solvent_height = math.nan, math.nan
    if family is None:
        solvent = None
        if rng.random() < o.solvent_probability:
            offsets = tuple(np.array(PRESETS[o.nucleus]["solvent_lines"])[:, 0])
            solvent = Solvent("preset", rng.uniform(*o.solvent_ppm), offsets, (1.0,) * len(offsets))
    else:
        solvent = family.draw_solvent(rng)
    if solvent is not None and abs(solvent.ppm - acq.carrier_ppm) < acq.sw_ppm / 2 * 0.9:
        solvent_ppm, solvent_height = solvent.ppm, rng.uniform(*o.solvent_height)
        width = acq.lw_hz * rng.uniform(0.5, 2.0)  # solvent lines: Lorentzian, often broad
        heights = solvent_height * np.asarray(solvent.weights) / max(solvent.weights)
        add((solvent.ppm - acq.carrier_ppm) * acq.mhz + np.asarray(solvent.offsets_hz),
            heights, width, SOLVENT, -1)

    cat = np.concatenate
    return Lines(
        freq_hz=cat(freq), amp=cat(amp).astype(np.float64), lorentz_hz=cat(lor),
        kind=cat(kind), group=cat(group), solvent_ppm=solvent_ppm, solvent_height=solvent_height,
        reference_ppm=reference_ppm, n_multiplets=n_mult, n_weak=n_weak,
    )


def apply_decay_floor(lines: Lines, acq, min_decay: float) -> float:
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


def draw_regions(rng: np.random.Generator, cfg: SimConfig, pos: np.ndarray, lines: Lines):
    """Region edges (points, un-drifted frame) for a non-linear drift, [0, L] otherwise.

    Regions are cut in the widest gaps between multiplets, so that few line tails cross
    an edge.
    """
    L = cfg.length
    if cfg.opts.nonlinear_drift == 0 or rng.random() >= cfg.opts.nonlinear_drift:
        return np.array([0, L])
    main = lines.kind == MAIN
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
