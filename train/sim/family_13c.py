"""13C{1H}: proton-decoupled singlets over 200-250 ppm, strong protonated carbons beside weak
quaternary ones, deuterated-solvent multiplets, and C-F doublets and quartets (fluorine is
not decoupled by a 1H decoupler)."""

from __future__ import annotations

import math

import numpy as np

from nmrladder.train.sim.family import Family, Multiplets, Solvent
from nmrladder.train.sim.multiplets import split

__all__ = ["CARBON"]

# Where carbons resonate: aliphatic, C-O/C-N, aromatic/olefinic, carbonyl (ppm, weight).
_REGIONS = ((10.0, 60.0, 0.40), (60.0, 95.0, 0.20), (110.0, 160.0, 0.30), (165.0, 215.0, 0.10))
# C-F couplings by the number of bonds between them (Hz).
_J_CF = {1: (235.0, 290.0), 2: (15.0, 40.0), 3: (3.0, 10.0), 4: (1.0, 4.0)}


def _positions(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    los, his, weights = np.array(_REGIONS).T
    which = rng.choice(len(_REGIONS), size=n, p=weights / weights.sum())
    ppm = rng.uniform(los[which], his[which])
    outside = (ppm < lo) | (ppm > hi)
    ppm[outside] = rng.uniform(lo, hi, size=int(outside.sum()))
    return ppm


def draw_carbons(rng: np.random.Generator, opts, acq, lo: float, hi: float,
                 base_lorentz: float) -> Multiplets:
    """Singlets: protonated carbons (NOE-enhanced, 1-3 H) and quaternary ones (no NOE, long
    T1: 5-30 % of a CH line's area, a little narrower); with probability 0.25 the molecule
    holds F or CF3 and the carbons near it split into doublets (quartets for CF3)."""
    n = int(rng.integers(opts.n_multiplets[0], opts.n_multiplets[1] + 1))
    ppm = _positions(rng, n, lo, hi)
    quaternary = rng.random(n) < 0.3
    area = np.where(quaternary, rng.uniform(0.05, 0.3, size=n),
                    rng.choice([1.0, 1.6, 2.0], size=n) * rng.uniform(0.7, 1.3, size=n))
    area *= math.exp(rng.uniform(math.log(0.3), 0.0))  # the compound's concentration
    width = base_lorentz * np.where(quaternary, rng.uniform(0.6, 1.0, size=n),
                                    rng.uniform(0.8, 1.25, size=n))
    n_fluorine = 0
    if rng.random() < 0.25:
        n_fluorine = 3 if rng.random() < 0.4 else 1  # CF3 or a single F
    bonds = np.zeros(n, dtype=np.int64)
    if n_fluorine:  # the carbon bearing F, then a few at 2-4 bonds
        near = rng.permutation(n)[: min(n, int(rng.integers(2, 6)))]
        bonds[near] = np.minimum(np.arange(1, near.size + 1), 4)
    freq, amp, lor, group = [], [], [], []
    for c in range(n):
        hz = np.array([(ppm[c] - acq.carrier_ppm) * acq.mhz])
        a = np.array([area[c]])
        if bonds[c]:
            hz, a = split(hz, a, rng.uniform(*_J_CF[int(bonds[c])]), n_fluorine)
        freq.append(hz)
        amp.append(a)
        lor.append(np.full(hz.size, width[c]))
        group.append(np.full(hz.size, c))
    cat = np.concatenate
    return Multiplets(freq_hz=cat(freq), amp=cat(amp), lorentz_hz=cat(lor),
                      group=cat(group), n_groups=n)


CARBON = Family(
    name="13c",
    nucleus="13C",
    description="13C{1H}: 5-60 singlets, weak quaternaries, CDCl3/DMSO-d6, C-F splittings",
    preset={
        "mhz_range": (300.0, 900.0), "sw_ppm": (200.0, 250.0), "carrier_ppm": (95.0, 115.0),
        "peak_ppm": (0.0, 220.0), "n_multiplets": (5, 60), "linewidth_hz": (0.5, 3.0),
        "lb_hz": (0.5, 3.0), "apodization_probability": 0.9, "min_decay": 1.5,
        "solvent_probability": 0.0, "solvent_height": (0.5, 8.0),
        "reference_probability": 0.3, "reference_ppm": 0.0, "weak_peaks": (0, 10),
    },
    draw=draw_carbons,
    solvents=(
        (Solvent("CDCl3", 77.16, (-32.0, 0.0, 32.0), (1, 1, 1)), 0.5),
        (Solvent("DMSO-d6", 39.52, tuple(21.0 * k for k in range(-3, 4)),
                 (1, 3, 6, 7, 6, 3, 1)), 0.3),
    ),
)
