"""31P{1H}: few lines, narrow (small molecules) and broad (phospholipids, membranes,
exchange); P-P coupled pairs and triplets as in pyrophosphates and nucleotides (an exact
spin system: their shift differences are a few ppm, their couplings ~20 Hz)."""

from __future__ import annotations

import math

import numpy as np

from nmrladder.train.sim.family import Family, Multiplets
from nmrladder.train.sim.spins import spin_system_lines

__all__ = ["PHOSPHORUS"]


def draw_phosphorus(rng: np.random.Generator, opts, acq, lo: float, hi: float,
                    base_lorentz: float) -> Multiplets:
    """1-8 phosphorus groups; 30 % broad (8-60x the sample's width); with probability 0.3
    one P-P chain of 2-3 groups (J 15-22 Hz, within 2-15 ppm of each other)."""
    n = int(rng.integers(opts.n_multiplets[0], opts.n_multiplets[1] + 1))
    parts = []
    remaining = n
    while remaining > 0:
        chain = int(min(rng.integers(2, 4), remaining)) if rng.random() < 0.3 else 1
        centre = rng.uniform(lo, hi)
        ppm = np.clip(centre + np.arange(chain) * rng.uniform(2.0, 15.0), lo, hi)
        shifts = (ppm - acq.carrier_ppm) * acq.mhz
        j = np.zeros((chain, chain))
        for k in range(chain - 1):
            j[k, k + 1] = j[k + 1, k] = rng.uniform(15.0, 22.0)
        freq, inten = spin_system_lines(shifts, j)
        nearest = np.argmin(np.abs(freq[:, None] - shifts[None, :]), axis=1)
        broad = rng.random() < 0.3
        width = base_lorentz * (rng.uniform(8.0, 60.0) if broad else rng.uniform(0.8, 1.25))
        area = math.exp(rng.uniform(math.log(0.1), 0.0))
        parts.append(Multiplets(freq_hz=freq, amp=area * inten,
                                lorentz_hz=np.full(freq.size, width),
                                group=nearest.astype(np.int64), n_groups=chain))
        remaining -= chain
    return Multiplets.concat(parts)


PHOSPHORUS = Family(
    name="31p",
    nucleus="31P",
    description="31P{1H}: few lines, narrow and broad, P-P coupled chains",
    preset={
        "mhz_range": (200.0, 800.0), "sw_ppm": (60.0, 300.0), "carrier_ppm": (-10.0, 30.0),
        "peak_ppm": (-40.0, 60.0), "n_multiplets": (1, 8), "linewidth_hz": (0.5, 3.0),
        "lb_hz": (0.5, 3.0), "apodization_probability": 0.8, "min_decay": 1.5,
        "solvent_probability": 0.0, "reference_probability": 0.3, "reference_ppm": 0.0,
        "weak_peaks": (0, 3),
    },
    draw=draw_phosphorus,
)
