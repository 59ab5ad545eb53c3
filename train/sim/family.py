"""What a spectrum family is: a nucleus, option presets and a drawer of the sample's lines.

A family module (``family_*.py``) makes one or more :class:`Family`; ``families`` gathers them.
The drawer returns the sample's own lines (:class:`Multiplets`); the reference singlet, the
weak lines near the noise floor and the solvent are added by the shared core (``lines``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Family", "Multiplets", "Solvent"]


@dataclass
class Multiplets:
    """Lines of the sample's compounds: frequency (Hz from the carrier), area, Lorentzian
    FWHM (Hz) and the multiplet (chemical group) each line belongs to, 0..n_groups - 1."""

    freq_hz: np.ndarray
    amp: np.ndarray
    lorentz_hz: np.ndarray
    group: np.ndarray
    n_groups: int

    @classmethod
    def concat(cls, parts: list[Multiplets]) -> Multiplets:
        """One Multiplets of several, group numbers made distinct."""
        offsets = np.cumsum([0] + [p.n_groups for p in parts[:-1]])
        cat = np.concatenate
        return cls(
            freq_hz=cat([p.freq_hz for p in parts]), amp=cat([p.amp for p in parts]),
            lorentz_hz=cat([p.lorentz_hz for p in parts]),
            group=cat([p.group + o for p, o in zip(parts, offsets, strict=True)]),
            n_groups=int(sum(p.n_groups for p in parts)),
        )


@dataclass(frozen=True)
class Solvent:
    """A solvent's residual signal: position (ppm), line offsets (Hz) and relative heights
    (the tallest line gets the drawn solvent height), e.g. the 1:1:1 C-D triplet of CDCl3."""

    name: str
    ppm: float
    offsets_hz: tuple[float, ...] = (0.0,)
    weights: tuple[float, ...] = (1.0,)


#: draw(rng, opts, acq, lo_ppm, hi_ppm, base_lorentz_hz) -> Multiplets
Drawer = Callable[..., Multiplets]


@dataclass(frozen=True)
class Family:
    """A spectrum family of the simulator.

    name : the ``family`` option's value; nucleus : observed nucleus; preset : SimOptions
    defaults of this family (each range documented in docs/simulator.md); draw : the drawer of
    the sample's lines; solvents : (solvent, probability) choices, the remaining probability
    meaning no solvent line.
    """

    name: str
    nucleus: str
    description: str
    preset: Mapping[str, Any]
    draw: Drawer
    solvents: tuple[tuple[Solvent, float], ...] = field(default_factory=tuple)

    def draw_solvent(self, rng: np.random.Generator) -> Solvent | None:
        """One of the family's solvents, or None, by their probabilities."""
        u = rng.random()
        for solvent, probability in self.solvents:
            if u < probability:
                return solvent
            u -= probability
        return None
