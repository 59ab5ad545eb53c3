"""Prepared ladders: what the network trains on, in memory or in an HDF5 cache.

The frame and amplitude choices (docs/training.md, "Data pipeline"):

- **Inputs are not interpolated.** The network must see inputs like the ones users give it,
  and linear interpolation smooths the noise. Rung k of the centred ladder, c_k = x_k -
  offsets[k], is drifted by ``shifts[k] = n_k + f_k`` against the common frame (n_k the
  nearest integer, ``|f_k| <= 0.5``); its input is ``input_k[i] = scales[k] * c_k[i + n_k]``,
  an integer roll, so it sits f_k points off the common frame: ``input_k[i] ~= ref[i - f_k]``.
- **Targets follow the input.** The target of rung k is s_hat (common frame) shifted by f_k
  with a band-limited (Fourier) shift, which does not smooth it: ``target_k[i] ~= s_hat[i -
  f_k]``. For L_cons the training brings outputs back by -f_k; L_T's baseline residuals
  ``input_k - y_k`` do not depend on the frame.
- **Units.** Everything of a ladder is divided by rung 0's noise sigma (preprocessing's
  ``sigma[0]``), so rung 0 has unit noise and losses are comparable across ladders. Each
  input row also gets the runtime's canonical network scaling (``robust_scale`` of the full
  row: ``centers``, ``sigmas``), precomputed once, as :mod:`nmrladder.runtime.scaling` does at
  inference.

:class:`PreparedLadders` holds them in memory, :class:`PreparedFile` reads the HDF5 cache
lazily (sets larger than memory); both answer :class:`Prepared`, which the batch sampler
reads. The preparation itself is :mod:`nmrladder.train.prepare`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from nmrladder.runtime.atomic import atomic_path
from nmrladder.runtime.errors import InputError

PREPARED_FORMAT = "nmrladder-prepared"
PREPARED_VERSION = 1

#: Per-ladder arrays of prepared data: name -> (per-ladder shape in terms of R and L, dtype).
_FIELDS: dict[str, tuple[str, str]] = {
    "inputs": ("RL", "f4"),   # network inputs in rung-0 noise units (see module docstring)
    "s_hat": ("L", "f4"),     # pseudo-truth, common frame, rung-0 noise units
    "frac": ("R", "f8"),      # f_k: sub-point offset of input_k from the common frame
    "roll": ("R", "i8"),      # n_k: the integer roll applied to rung k
    "offsets": ("R", "f8"),   # medians removed from each rung (its own units)
    "scales": ("R", "f8"),    # amplitude scale of each rung (1 without re-scaling)
    "unit": ("", "f8"),       # rung 0's noise sigma in the common frame: the amplitude unit
    "noise": ("R", "f8"),     # noise of each input row, rung-0 units (~T**-k)
    "centers": ("R", "f8"),   # canonical network scaling of each input row (robust_scale)
    "sigmas": ("R", "f8"),
    "peak_mask": ("L", "u1"),  # M, common frame
    "base_mask": ("L", "u1"),  # B, common frame
    "T": ("", "f8"),          # the T used by L_T (true or T_hat)
    "t_hat": ("", "f8"),
}


# --------------------------------------------------------------------------- frames


def fractional_shift(x: np.ndarray, shift: np.ndarray | float) -> np.ndarray:
    """Band-limited circular shift along the last axis: ``out[..., i] = x[..., i - shift]``.

    x [..., L]; shift broadcasts against x[..., 0]. The straight line through the two end
    points is removed first and shifted analytically, so the jump between the ends of a
    spectrum (baseline roll) does not ring; the rest moves by a Fourier phase ramp, which
    unlike linear interpolation does not smooth it.
    """
    x = np.asarray(x, dtype=np.float64)
    d = np.asarray(shift, dtype=np.float64)[..., None]
    n = x.shape[-1]
    i = np.arange(n, dtype=np.float64)
    slope = (x[..., -1:] - x[..., :1]) / max(n - 1, 1)
    line = x[..., :1] + slope * i
    rest = x - line
    freq = np.arange(n // 2 + 1)
    moved = np.fft.irfft(np.fft.rfft(rest) * np.exp(-2j * np.pi * freq * d / n), n=n)
    return moved + x[..., :1] + slope * (i - d)


def to_input_frame(
    spectra: np.ndarray, offsets: np.ndarray, roll: np.ndarray, scales: np.ndarray,
    unit: np.ndarray,
) -> np.ndarray:
    """The network-input transform of prepared ladders, applied to spectra [N, R, L].

    ``out[n, k, i] = scales[n, k] * (spectra[n, k, i + roll[n, k]] - offsets[n, k]) / unit[n]``
    (circular). Applied to the rungs it gives the inputs; applied to anything else in the
    rungs' own units (e.g. their noise-free content) it gives that in the inputs' frame.
    """
    x = np.asarray(spectra, dtype=np.float64)
    L = x.shape[-1]
    idx = (np.arange(L)[None, None, :] + np.asarray(roll)[..., None]) % L
    rolled = np.take_along_axis(x, idx, axis=-1) - np.asarray(offsets)[..., None]
    factor = np.asarray(scales, dtype=np.float64) / np.asarray(unit, dtype=np.float64)[:, None]
    return (rolled * factor[..., None]).astype(np.float32)


# --------------------------------------------------------------------------- prepared data


class Prepared(Protocol):
    """What the sampler and the training need from prepared ladders, in memory or on disk."""

    rungs: int
    length: int
    meta: dict[str, Any]

    def __len__(self) -> int: ...

    def read(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass
class PreparedLadders:
    """Prepared ladders in memory; arrays as named in ``_FIELDS``.

    inputs [N, R, L] float32 and s_hat [N, L] float32 in rung-0 noise units; frac, roll,
    offsets, scales, noise, centers, sigmas [N, R]; unit, T, t_hat [N]; peak_mask,
    base_mask [N, L] bool (common frame). meta: source, options, t_source, rescale.
    """

    inputs: np.ndarray
    s_hat: np.ndarray
    frac: np.ndarray
    roll: np.ndarray
    offsets: np.ndarray
    scales: np.ndarray
    unit: np.ndarray
    noise: np.ndarray
    centers: np.ndarray
    sigmas: np.ndarray
    peak_mask: np.ndarray
    base_mask: np.ndarray
    T: np.ndarray
    t_hat: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def rungs(self) -> int:
        return self.inputs.shape[1]

    @property
    def length(self) -> int:
        return self.inputs.shape[2]

    def read(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of the ladders at indices (any order, repeats allowed)."""
        idx = np.asarray(indices, dtype=np.int64)
        return {name: getattr(self, name)[idx] for name in _FIELDS}

    def save(self, path: str | os.PathLike) -> Path:
        """Write to the HDF5 cache format (read back with :func:`open_prepared`)."""
        with _PreparedWriter(path, len(self), self.rungs, self.length, self.meta) as w:
            w.write({name: getattr(self, name) for name in _FIELDS})
        return Path(path)


class PreparedFile:
    """Prepared ladders in an HDF5 cache, read lazily (for sets larger than memory)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as err:
            raise InputError(f"{self.path}: cannot open as HDF5 ({err})") from None
        if self.file.attrs.get("format") != PREPARED_FORMAT:
            self.file.close()
            raise InputError(f"{self.path}: not a nmrladder prepared-ladders cache")
        self.meta = json.loads(self.file.attrs["meta"])
        self.rungs, self.length = self.file["inputs"].shape[1:]

    def __len__(self) -> int:
        return self.file["inputs"].shape[0]

    def __enter__(self) -> PreparedFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def read(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        # h5py wants increasing unique indices: read those, then restore order and repeats.
        unique, inverse = np.unique(idx, return_inverse=True)
        out = {}
        for name in _FIELDS:
            values = self.file[name][unique]
            if name in ("peak_mask", "base_mask"):
                values = values.view(bool)
            out[name] = values[inverse]
        return out

    def load(self) -> PreparedLadders:
        """Everything in memory."""
        arrays = self.read(np.arange(len(self)))
        return PreparedLadders(**arrays, meta=dict(self.meta))


def open_prepared(path: str | os.PathLike) -> PreparedFile:
    """Open a prepared-ladders cache lazily."""
    return PreparedFile(path)


class _PreparedWriter:
    """Creates the datasets of a prepared cache at a temporary name; renamed on success."""

    def __init__(self, path, n: int, R: int, L: int, meta: Mapping[str, Any]):
        self._ctx = atomic_path(path)
        self._shape = (n, R, L)
        self._meta = dict(meta)

    def __enter__(self) -> _PreparedWriter:
        tmp = self._ctx.__enter__()
        try:
            self.f = h5py.File(tmp, "w")
            n, R, L = self._shape
            self.f.attrs["format"] = PREPARED_FORMAT
            self.f.attrs["format_version"] = PREPARED_VERSION
            self.f.attrs["meta"] = json.dumps(self._meta)
            dims = {"R": R, "L": L}
            for name, (axes, dtype) in _FIELDS.items():
                shape = tuple(dims[a] for a in axes)
                # One ladder per chunk for the spectra: a random batch touches B chunks.
                rows = 1 if "L" in axes else min(n, 4096)
                # Resizable: ladders the preprocessing refuses leave the set shorter.
                self.f.create_dataset(name, shape=(n, *shape), dtype=dtype,
                                      chunks=(max(rows, 1), *shape), maxshape=(None, *shape))
            self.count = 0
        except BaseException:
            self._ctx.__exit__(None, None, None)
            raise
        return self

    def write(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Append the ladders of arrays after those already written."""
        start = self.count
        self.count += len(arrays["inputs"])
        for name in _FIELDS:
            values = np.asarray(arrays[name])
            if values.dtype == bool:
                values = values.view(np.uint8)
            self.f[name][start:self.count] = values

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        self.f.attrs["meta"] = json.dumps(dict(meta))

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            for name in _FIELDS:
                self.f[name].resize(self.count, axis=0)
        self.f.close()
        self._ctx.__exit__(exc_type, exc, tb)


def prepared_nbytes(n: int, rungs: int, length: int) -> int:
    """Approximate memory of prepared ladders, bytes."""
    per_ladder = rungs * length * 4 + length * (4 + 2) + rungs * 8 * 9 + 32
    return n * per_ladder
