"""Every spectrum family of the simulator, by the ``family`` option's name."""

from __future__ import annotations

from nmrladder.train.sim.family import Family
from nmrladder.train.sim.family_1h import BENCHTOP, HIGH_FIELD
from nmrladder.train.sim.family_13c import CARBON
from nmrladder.train.sim.family_19f import FLUORINE
from nmrladder.train.sim.family_31p import PHOSPHORUS

__all__ = ["FAMILIES", "Family"]

FAMILIES: dict[str, Family] = {
    f.name: f for f in (HIGH_FIELD, BENCHTOP, CARBON, FLUORINE, PHOSPHORUS)
}
