"""1H families: high field (300-1200 MHz) and benchtop (40-100 MHz).

Both draw molecules as small coupled spin systems solved exactly (``spins``), so the
second-order patterns of close shifts (roofing, AB quartets, extra lines) come out as the
field makes them: rare at 1 GHz, common at 60 MHz, where a 0.1 ppm shift difference is only
6 Hz, as small as a vicinal coupling.
"""

from __future__ import annotations

import math

import numpy as np

from nmrladder.train.sim.family import Family, Multiplets, Solvent
from nmrladder.train.sim.spins import MAX_SPINS, spin_system_lines

__all__ = ["BENCHTOP", "HIGH_FIELD", "draw_spin_systems"]


def _system_groups(rng: np.random.Generator, n_groups: int) -> np.ndarray:
    """Spins per chemical group (1, 2 or 3: CH, CH2, CH3), at most MAX_SPINS in the system."""
    sizes = rng.choice([1, 2, 3], size=n_groups, p=[0.45, 0.35, 0.20])
    while sizes.sum() > MAX_SPINS:
        sizes[np.argmax(sizes)] -= 1
    return sizes


def draw_spin_systems(rng: np.random.Generator, opts, acq, lo: float, hi: float,
                      base_lorentz: float) -> Multiplets:
    """Molecules as spin systems of 1-3 chemical groups; ``n_multiplets`` counts groups.

    Groups of one system sit within a few tenths of a ppm of each other about half of the
    time (aliphatic chains, aromatic rings), else anywhere in the window; couplings between
    groups are drawn from ``j_hz``, about a third of the pairs uncoupled.
    """
    n_target = int(rng.integers(opts.n_multiplets[0], opts.n_multiplets[1] + 1))
    parts, n_done = [], 0
    while n_done < n_target:
        n_groups = int(min(rng.integers(1, 4), n_target - n_done))
        sizes = _system_groups(rng, n_groups)
        centre = rng.uniform(lo, hi)
        spread = rng.uniform(0.05, 0.6) if rng.random() < 0.5 else (hi - lo) / 2
        ppm = np.clip(centre + rng.uniform(-spread, spread, size=n_groups), lo, hi)
        group_j = rng.uniform(*opts.j_hz, size=(n_groups, n_groups))
        group_j *= rng.random((n_groups, n_groups)) > 0.35
        group_j = np.triu(group_j, 1) + np.triu(group_j, 1).T
        spin_group = np.repeat(np.arange(n_groups), sizes)
        shifts = (ppm[spin_group] - acq.carrier_ppm) * acq.mhz
        freq, inten = spin_system_lines(shifts, group_j[np.ix_(spin_group, spin_group)])
        # Each line belongs to the group whose shift is nearest (for regions and metrics).
        nearest = np.argmin(np.abs(freq[:, None] - shifts[None, :]), axis=1)
        concentration = math.exp(rng.uniform(math.log(0.1), 0.0))
        width = base_lorentz * rng.uniform(0.8, 1.25)
        parts.append(Multiplets(
            freq_hz=freq, amp=concentration * inten, lorentz_hz=np.full(freq.size, width),
            group=spin_group[nearest].astype(np.int64), n_groups=n_groups,
        ))
        n_done += n_groups
    return Multiplets.concat(parts)


_COMMON = {
    "peak_ppm": (0.5, 9.5),
    "n_multiplets": (3, 25),
    "j_hz": (1.0, 17.0),
    "solvent_probability": 0.0,  # the family's solvents below are used instead
    "solvent_height": (2.0, 50.0),
    "reference_probability": 0.5,
    "reference_ppm": 0.0,
}

_SOLVENTS_1H = (
    (Solvent("H2O/HDO", 4.79), 0.45),
    (Solvent("CHCl3", 7.26), 0.15),
    (Solvent("DMSO-d5", 2.50, (-3.8, -1.9, 0.0, 1.9, 3.8), (1, 2, 3, 2, 1)), 0.15),
)

HIGH_FIELD = Family(
    name="1h",
    nucleus="1H",
    description="1H at 300-1200 MHz: spin systems (mostly first order), water/CHCl3/DMSO",
    preset={**_COMMON, "mhz_range": (300.0, 1200.0), "sw_ppm": (10.0, 16.0),
            "carrier_ppm": (4.0, 5.5), "linewidth_hz": (0.4, 3.0)},
    draw=draw_spin_systems,
    solvents=_SOLVENTS_1H,
)

BENCHTOP = Family(
    name="1h-benchtop",
    nucleus="1H",
    description="1H at 40-100 MHz (permanent magnets): strong coupling, wider lines in ppm",
    preset={**_COMMON, "mhz_range": (40.0, 100.0), "sw_ppm": (20.0, 60.0),
            "carrier_ppm": (4.0, 6.0), "linewidth_hz": (0.4, 2.0), "n_multiplets": (2, 15),
            "nonlinear_drift": 0.0},
    draw=draw_spin_systems,
    solvents=_SOLVENTS_1H,
)
