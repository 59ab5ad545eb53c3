"""The spectrum-to-spectrum core: scale -> network -> unscale -> strength step, written once.

    prepared = core.prepare(x)            # the canonical input z and how to map back
    output = network(prepared.z)          # the caller batches, threads or spreads it as it likes
    y = core.finish(prepared, output)     # crop, undo the scaling, then the strength step
    y, reports = core.finish_report(prepared, output, ppm)   # ... with a RemovalReport each

    copies = core.renoise(prepared, y)                       # the confidence band (optional):
    band = core.confidence(prepared, y, copies, network(copies.z))   # K more network runs

Every path from a spectrum to its denoised spectrum runs through here: ``Denoiser.denoise``
(the Python API, ``denoise_series`` and the torch backend's sessions through it), the batch
job and the Ray engine (they prepare each file as it is read, batch the network across files,
and finish each output before it is written: runtime/stages.py), and
``train.inference.TorchDenoiser`` (evaluation, training hooks). What a spectrum goes through
around the network is therefore the same code on every path; the steps around the network
live here: the strength dial and its automatic setting (runtime/strength.py; the residual
step of runtime/residual.py is its point 1/2, and ``residual_lb`` keeps working), the removal
report, and the per-point confidence band (runtime/confidence.py), whose re-noised copies the
caller runs through its network like any other batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from nmrladder.runtime.confidence import DEFAULT_COPIES, band, checked_copies, renoised, row_seeds
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.residual import checked_factor, restore_residual
from nmrladder.runtime.scaling import from_model_output, to_model_input
from nmrladder.runtime.strength import (
    Removal,
    RemovalReport,
    auto_strength,
    checked_strength,
    fixed_strength,
    strength_of_factor,
)

#: The network as the core sees it: the canonical input z [B, L_pad] -> its output [B, L_pad].
Network = Callable[[np.ndarray], np.ndarray]


@dataclass
class Prepared:
    """Spectra on their way through the network.

    x [N, L]: the spectra as the caller gave them (their dtype kept: the residual step
    re-fits to them); z [N, L_pad]: the network's input (float32, runtime/scaling.py);
    centers, sigmas [N]: each spectrum's baseline level and noise sigma, which map the
    output back.
    """

    x: np.ndarray
    z: np.ndarray
    centers: np.ndarray
    sigmas: np.ndarray

    @property
    def length(self) -> int:
        return self.x.shape[-1]


def prepare(x: np.ndarray, multiple: int, threads: int | None = None) -> Prepared:
    """Scale spectra x [N, L] to the network's input, padded to ``multiple`` points
    (``threads``: the scaling kernels', None for every core)."""
    z, centers, sigmas = to_model_input(x, multiple, threads=threads)
    return Prepared(x, z, centers, sigmas)


@dataclass
class Checked:
    """What :meth:`Core.check` returns: the outputs [N, L] (float32), each point's estimated
    error sigma [N, L] (None unless asked) and a :class:`RemovalReport` per spectrum."""

    output: np.ndarray
    confidence: np.ndarray | None
    reports: list[RemovalReport]


@dataclass(frozen=True)
class Core:
    """What a denoiser does around its network: the length ``multiple`` the network needs and
    the steps after it: ``strength`` (a number in [0, 1] or "auto"; None: 1, the network's
    output; runtime/strength.py) or ``residual_lb`` (the residual step's factor; None: off;
    runtime/residual.py), not both."""

    multiple: int
    residual_lb: float | None = None
    strength: float | str | None = None

    def __post_init__(self):
        if self.residual_lb is not None:
            object.__setattr__(self, "residual_lb", checked_factor(self.residual_lb))
        object.__setattr__(self, "strength", checked_strength(self.strength))
        if self.residual_lb is not None and self.strength is not None:
            raise InputError(
                f"residual_lb={self.residual_lb:g} and strength={self.strength!r}: give one "
                "(residual_lb F <= 0.5 is strength F / (F + 0.5); 0.5 is strength 0.5)"
            )

    def prepare(self, x: np.ndarray, threads: int | None = None) -> Prepared:
        """Spectra x [N, L] scaled to the network's input (:func:`prepare`)."""
        return prepare(x, self.multiple, threads)

    def finish(self, prepared: Prepared, output: np.ndarray) -> np.ndarray:
        """The network's ``output`` [N, L_pad] for ``prepared``, cropped and in the input's
        units, then the strength step (or the residual step): float32 [N, L]."""
        y = from_model_output(output, prepared.centers, prepared.sigmas, prepared.length)
        if self.residual_lb is not None:
            scale = (prepared.centers, prepared.sigmas)
            return restore_residual(prepared.x, y, self.residual_lb, scale)
        if self.strength is None or self.strength == 1.0:
            return y
        if self.strength == 0.0:
            return np.array(prepared.x, dtype=np.float32, copy=True)  # the input, bit for bit
        removal = Removal(prepared.x, y, prepared.centers, prepared.sigmas)
        if self.strength == "auto":
            return auto_strength(removal)[0]
        return fixed_strength(removal, self.strength)[0]

    def finish_report(
        self, prepared: Prepared, output: np.ndarray, ppm=None
    ) -> tuple[np.ndarray, list[RemovalReport]]:
        """:meth:`finish`, and what each output removed from its input (a RemovalReport per
        spectrum; ``ppm``: the ppm axis [L] or [N, L], for the report's positions)."""
        y = from_model_output(output, prepared.centers, prepared.sigmas, prepared.length)
        removal = Removal(prepared.x, y, prepared.centers, prepared.sigmas)
        if self.strength == "auto":
            delivered, _, reports = auto_strength(removal, report=True, ppm=ppm)
            return delivered, reports
        delivered = self.finish(prepared, output)
        if self.residual_lb is not None:
            strength = (strength_of_factor(self.residual_lb)
                        if self.residual_lb <= 0.5 else float("nan"))
        else:
            strength = 1.0 if self.strength is None else float(self.strength)
        strength_map = np.full(delivered.shape, strength)
        if self.residual_lb is None and strength == 1.0:
            # The delivered output is the network's: what remains removed is what was
            # removed, so one matched filter serves both halves of the report.
            removed = removal.filtered(removal.x - removal.y)
            return delivered, removal.report(delivered, strength_map, ppm, removed=removed,
                                             remaining_t=removed[0])
        return delivered, removal.report(delivered, strength_map, ppm)

    def renoise(self, prepared: Prepared, delivered: np.ndarray,
                copies: int = DEFAULT_COPIES, threads: int | None = None) -> Prepared:
        """``copies`` re-noised copies of each delivered output [N, L] at its input's noise,
        prepared for the network ([N * copies] rows, spectrum by spectrum; the draws seeded by
        each input's bytes: runtime/confidence.py)."""
        copies = checked_copies(copies)
        x = renoised(delivered, prepared.sigmas, copies, row_seeds(prepared.x))
        return self.prepare(x, threads)

    def confidence(self, prepared: Prepared, delivered: np.ndarray, copies: Prepared,
                   output: np.ndarray) -> np.ndarray:
        """Each delivered point's estimated error sigma, float32 [N, L], from the network's
        ``output`` on the re-noised ``copies`` (:meth:`renoise`), finished like the spectra."""
        return band(prepared.x, delivered, self.finish(copies, output),
                    prepared.centers, prepared.sigmas)

    def check(self, x: np.ndarray, network: Network, threads: int | None = None,
              copies: int = 0, ppm=None) -> Checked:
        """Spectra x [N, L] through the core with the removal reports and, with ``copies``
        >= 1, the confidence band (the network runs ``copies`` more times per spectrum)."""
        prepared = self.prepare(x, threads)
        y, reports = self.finish_report(prepared, network(prepared.z), ppm)
        sigma = None
        if copies:
            renoised_copies = self.renoise(prepared, y, copies, threads)
            sigma = self.confidence(prepared, y, renoised_copies, network(renoised_copies.z))
        return Checked(y, sigma, reports)

    def denoise(self, x: np.ndarray, network: Network, threads: int | None = None) -> np.ndarray:
        """Spectra x [N, L] through the whole core, the network run by ``network`` on z."""
        prepared = self.prepare(x, threads)
        return self.finish(prepared, network(prepared.z))

    def with_residual(self, residual_lb: float | None) -> Core:
        """This core with the residual step set to ``residual_lb`` (None: off) and no
        strength setting."""
        return replace(self, residual_lb=residual_lb, strength=None)

    def with_strength(self, strength: float | str | None) -> Core:
        """This core at ``strength`` (a number in [0, 1], "auto", or None: 1) and without the
        residual step."""
        return replace(self, residual_lb=None, strength=strength)


class CoreDenoiser:
    """Base of the denoisers that run the core (``Denoiser``, ``train.inference.TorchDenoiser``):
    their ``core`` attribute, the residual step's and the strength's settings read off it, and
    copies with another setting that share the network (what an evaluation row "+ residual
    LB" or "strength auto" runs)."""

    core: Core

    @property
    def residual_lb(self) -> float | None:
        """The residual step's factor (None: off)."""
        return self.core.residual_lb

    def with_residual(self, residual_lb: float | None):
        """This denoiser with the residual step set to ``residual_lb`` (None: off), sharing
        its network."""
        other = copy.copy(self)
        other.core = self.core.with_residual(residual_lb)
        return other

    @property
    def strength(self) -> float | str | None:
        """The strength setting (None: 1, the network's output)."""
        return self.core.strength

    def with_strength(self, strength: float | str | None):
        """This denoiser at ``strength`` (runtime/strength.py), sharing its network."""
        other = copy.copy(self)
        other.core = self.core.with_strength(strength)
        return other


__all__ = ["Checked", "Core", "CoreDenoiser", "Network", "Prepared", "prepare"]
