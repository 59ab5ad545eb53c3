"""19F: windows up to 300 ppm, CF3 singlets, aromatic and aliphatic fluorines split by
protons (first order) and by each other (an exact spin system: geminal CF2 pairs couple by
200-300 Hz across a few ppm, which is strong coupling even at 400 MHz), some broad lines."""

from __future__ import annotations

import math

import numpy as np

from nmrladder.train.sim.family import Family, Multiplets
from nmrladder.train.sim.multiplets import split
from nmrladder.train.sim.spins import spin_system_lines

__all__ = ["FLUORINE"]

# Kinds of fluorine group: (name, ppm range, fluorines, probability).
_KINDS = (
    ("CF3", (-85.0, -55.0), 3, 0.35),
    ("ArF", (-175.0, -100.0), 1, 0.35),
    ("CHF2", (-135.0, -110.0), 2, 0.10),
    ("CF2", (-125.0, -90.0), 2, 0.10),
    ("alkyl-F", (-230.0, -170.0), 1, 0.10),
)
# F-H couplings of each kind, first order: (J range Hz, number of equivalent protons).
_J_FH = {
    "CF3": (((5.0, 11.0), 2),),  # CF3-CH2 (e.g. trifluoroethoxy)
    "ArF": (((7.0, 11.0), 2), ((4.0, 6.5), 2)),  # ortho, meta protons
    "CHF2": (((50.0, 58.0), 1),),  # geminal
    "CF2": (((10.0, 20.0), 2),),
    "alkyl-F": (((45.0, 50.0), 1), ((20.0, 30.0), 2)),
}


def draw_fluorines(rng: np.random.Generator, opts, acq, lo: float, hi: float,
                   base_lorentz: float) -> Multiplets:
    """Fluorine groups of the kinds above; 1H decoupled in half the samples (no F-H
    splitting); a CF2 is a diastereotopic AB pair with probability 0.5; 15 % of groups are
    broad (10-40x the sample's width: polymers, fluoride, exchange)."""
    decoupled = rng.random() < 0.5
    n = int(rng.integers(opts.n_multiplets[0], opts.n_multiplets[1] + 1))
    probs = np.array([k[3] for k in _KINDS])
    parts = []
    for _ in range(n):
        name, (p_lo, p_hi), n_f, _ = _KINDS[int(rng.choice(len(_KINDS), p=probs / probs.sum()))]
        ppm = rng.uniform(max(p_lo, lo), min(p_hi, hi)) if max(p_lo, lo) < min(p_hi, hi) \
            else rng.uniform(lo, hi)
        centre = (ppm - acq.carrier_ppm) * acq.mhz
        if name == "CF2" and rng.random() < 0.5:  # AB: J_FF 230-290 Hz over 0.5-8 ppm
            delta = rng.uniform(0.5, 8.0) * acq.mhz
            j_ff = rng.uniform(230.0, 290.0)
            freq, inten = spin_system_lines([centre - delta / 2, centre + delta / 2],
                                            [[0.0, j_ff], [j_ff, 0.0]])
        else:
            freq, inten = np.array([centre]), np.array([float(n_f)])
        if not decoupled:
            for j_range, n_h in _J_FH[name]:
                freq, inten = split(freq, inten, rng.uniform(*j_range), n_h)
        if name == "ArF" and rng.random() < 0.3:  # an ortho or meta fluorine neighbour
            freq, inten = split(freq, inten, rng.uniform(2.0, 22.0), 1)
        width = base_lorentz * (rng.uniform(10.0, 40.0) if rng.random() < 0.15
                                else rng.uniform(0.8, 1.25))
        area = math.exp(rng.uniform(math.log(0.1), 0.0))
        parts.append(Multiplets(freq_hz=freq, amp=area * inten,
                                lorentz_hz=np.full(freq.size, width),
                                group=np.zeros(freq.size, dtype=np.int64), n_groups=1))
    return Multiplets.concat(parts)


FLUORINE = Family(
    name="19f",
    nucleus="19F",
    description="19F: CF3, aryl and alkyl F, F-H and F-F couplings, broad lines",
    preset={
        "mhz_range": (300.0, 700.0), "sw_ppm": (50.0, 300.0), "carrier_ppm": (-140.0, -90.0),
        "peak_ppm": (-230.0, -50.0), "n_multiplets": (1, 10), "linewidth_hz": (0.5, 4.0),
        "lb_hz": (0.3, 3.0), "apodization_probability": 0.7, "min_decay": 1.5,
        "solvent_probability": 0.0, "reference_probability": 0.2, "reference_ppm": -63.72,
        "weak_peaks": (0, 4),
    },
    draw=draw_fluorines,
)
