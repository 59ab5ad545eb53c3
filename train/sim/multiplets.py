"""First-order multiplets: the legacy drawer of every nucleus preset, and heteronuclear
splitting (always first order: the coupled nuclei differ by MHz, not Hz)."""

from __future__ import annotations

import math

import numpy as np

from nmrladder.train.sim.family import Multiplets

__all__ = ["MULTIPLET_PARTNERS", "draw_first_order", "split"]

#: First-order multiplets: number of equivalent partners per coupling (binomial intensities).
MULTIPLET_PARTNERS = {"s": (), "d": (1,), "t": (2,), "q": (3,), "dd": (1, 1), "dt": (1, 2)}


def _multiplet_sticks(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Lines of a first-order multiplet: offsets = coef @ couplings (Hz), binomial weights.

    Returns coef [S, n_couplings] and weights [S] (sum 1): e.g. a triplet is offsets
    (-J, 0, J) with weights (1/4, 1/2, 1/4); a dt combines a doublet and a triplet.
    """
    partners = MULTIPLET_PARTNERS[kind]
    coef, weights = np.zeros((1, len(partners))), np.ones(1)
    for c, n_equiv in enumerate(partners):
        k = np.arange(n_equiv + 1)
        binom = np.array([math.comb(n_equiv, int(i)) for i in k]) / 2.0**n_equiv
        step = np.zeros((k.size, len(partners)))
        step[:, c] = k - n_equiv / 2
        coef = (coef[:, None, :] + step[None, :, :]).reshape(-1, len(partners))
        weights = (weights[:, None] * binom[None, :]).ravel()
    return coef, weights


_STICKS = {kind: _multiplet_sticks(kind) for kind in MULTIPLET_PARTNERS}


def split(freq_hz: np.ndarray, amp: np.ndarray, coupling_hz: float, n_equiv: int, spin: int = 1):
    """Every line split by n_equiv equivalent partners of spin 1/2 (spin=1) or spin 1
    (spin=2, deuterium), first order: binomial (or trinomial) weights; area kept."""
    if n_equiv == 0 or coupling_hz == 0.0:
        return freq_hz, amp
    pattern = np.ones(1)
    for _ in range(n_equiv):
        pattern = np.convolve(pattern, np.ones(spin + 1))
    pattern /= pattern.sum()
    offsets = (np.arange(pattern.size) - (pattern.size - 1) / 2) * coupling_hz
    return ((freq_hz[:, None] + offsets).ravel(), (amp[:, None] * pattern).ravel())


def draw_first_order(rng: np.random.Generator, opts, acq, lo: float, hi: float,
                     base_lorentz: float) -> Multiplets:
    """Multiplets of the types and couplings of the options, drawn all at once, then
    expanded into lines type by type (the legacy presets' drawer)."""
    types = list(opts.multiplets)
    n_mult = int(rng.integers(opts.n_multiplets[0], opts.n_multiplets[1] + 1))
    mtype = rng.choice(len(types), size=n_mult, p=[opts.multiplets[t] for t in types])
    couplings = -np.sort(-rng.uniform(*opts.j_hz, size=(n_mult, 2)), axis=1)  # J1 >= J2
    centre_hz = (rng.uniform(lo, hi, size=n_mult) - acq.carrier_ppm) * acq.mhz
    n_h = rng.choice([1.0, 2.0, 3.0], size=n_mult, p=[0.5, 0.35, 0.15])
    area = n_h * np.exp(rng.uniform(math.log(0.1), 0.0, size=n_mult))  # concentrations ~10x
    width = base_lorentz * rng.uniform(0.8, 1.25, size=n_mult)
    freq, amp, lor, group = [], [], [], []
    for t, name in enumerate(types):
        sel = np.flatnonzero(mtype == t)
        if sel.size:
            coef, weights = _STICKS[name]
            hz = centre_hz[sel, None] + couplings[sel, : coef.shape[1]] @ coef.T
            n_sticks = weights.size
            freq.append(hz.ravel())
            amp.append((area[sel, None] * weights).ravel())
            lor.append(np.repeat(width[sel], n_sticks))
            group.append(np.repeat(sel, n_sticks))
    cat = np.concatenate
    return Multiplets(freq_hz=cat(freq), amp=cat(amp), lorentz_hz=cat(lor),
                      group=cat(group).astype(np.int64), n_groups=n_mult)
