"""The spectrum-to-spectrum core: scale -> network -> unscale -> residual step, written once.

    prepared = core.prepare(x)            # the canonical input z and how to map back
    output = network(prepared.z)          # the caller batches, threads or spreads it as it likes
    y = core.finish(prepared, output)     # crop, undo the scaling, then the residual step

Every path from a spectrum to its denoised spectrum runs through here: ``Denoiser.denoise``
(the Python API, ``denoise_series`` and the torch backend's sessions through it), the batch
job and the Ray engine (they prepare each file as it is read, batch the network across files,
and finish each output before it is written: runtime/stages.py), and
``train.inference.TorchDenoiser`` (evaluation, training hooks). What a spectrum goes through
around the network is therefore the same code on every path; a step added around the network
(a strength dial, a per-point confidence) belongs in :meth:`Core.finish`, with what it needs
carried in :class:`Prepared`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from nmrladder.runtime.residual import checked_factor, restore_residual
from nmrladder.runtime.scaling import from_model_output, to_model_input

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


@dataclass(frozen=True)
class Core:
    """What a denoiser does around its network: the length ``multiple`` the network needs and
    the steps after it (``residual_lb``: the residual step's factor, None for none; see
    runtime/residual.py)."""

    multiple: int
    residual_lb: float | None = None

    def __post_init__(self):
        if self.residual_lb is not None:
            object.__setattr__(self, "residual_lb", checked_factor(self.residual_lb))

    def prepare(self, x: np.ndarray, threads: int | None = None) -> Prepared:
        """Spectra x [N, L] scaled to the network's input (:func:`prepare`)."""
        return prepare(x, self.multiple, threads)

    def finish(self, prepared: Prepared, output: np.ndarray) -> np.ndarray:
        """The network's ``output`` [N, L_pad] for ``prepared``, cropped and in the input's
        units, then the residual step when it is on: float32 [N, L]."""
        y = from_model_output(output, prepared.centers, prepared.sigmas, prepared.length)
        if self.residual_lb is not None:
            scale = (prepared.centers, prepared.sigmas)
            y = restore_residual(prepared.x, y, self.residual_lb, scale)
        return y

    def denoise(self, x: np.ndarray, network: Network, threads: int | None = None) -> np.ndarray:
        """Spectra x [N, L] through the whole core, the network run by ``network`` on z."""
        prepared = self.prepare(x, threads)
        return self.finish(prepared, network(prepared.z))

    def with_residual(self, residual_lb: float | None) -> Core:
        """This core with the residual step set to ``residual_lb`` (None: off)."""
        return replace(self, residual_lb=residual_lb)


class CoreDenoiser:
    """Base of the denoisers that run the core (``Denoiser``, ``train.inference.TorchDenoiser``):
    their ``core`` attribute, the residual step's setting read off it, and a copy with
    another setting that shares the network (what an evaluation row "+ residual LB" runs)."""

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


__all__ = ["Core", "CoreDenoiser", "Network", "Prepared", "prepare"]
