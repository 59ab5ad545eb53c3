"""Reading and writing 1D NMR spectra (real part), keeping the ppm axis and the metadata.

One entry point per direction: :func:`read_spectrum` and :func:`write_spectrum`, dispatching
on the format. NMR formats go through nmrglue (see nmrladder.runtime.formats); plain formats
(.npy, .npz, .csv) are handled here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmrladder.runtime.errors import InputError


@dataclass
class Spectrum:
    """A 1D real spectrum: intensities [L] (float32), its ppm axis [L] or None, and metadata.

    ``meta`` keeps what is needed to write the spectrum back in its own format
    (e.g. nmrglue's universal dictionary and the source path).
    """

    intensities: np.ndarray
    ppm: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    source: str = ""
    format: str = ""

    def __len__(self) -> int:
        return int(self.intensities.size)


def _checked(values, source: str) -> np.ndarray:
    """Finite, non-empty, 1D float32 intensities, or an InputError naming the file."""
    arr = np.asarray(values)
    if arr.size == 0:
        raise InputError(f"{source}: the spectrum is empty")
    if np.iscomplexobj(arr):
        arr = arr.real  # nmrladder works on the real part
    arr = np.squeeze(arr)
    if arr.ndim != 1:
        raise InputError(f"{source}: expected a 1D spectrum, got shape {np.shape(values)}")
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(
            f"{source}: {int(bad.sum())} NaN/Inf value(s), first at point {int(np.argmax(bad))}"
        )
    return arr


def _read_npy(path: Path) -> Spectrum:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable .npy file ({err})") from err
    return Spectrum(_checked(data, str(path)), None, {}, str(path), "npy")


def _read_npz(path: Path) -> Spectrum:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "intensities" in keys:
                key = "intensities"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise InputError(f"{path}: .npz needs an 'intensities' array (found {keys})")
            values = archive[key]
            ppm = archive["ppm"] if "ppm" in keys else None
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable .npz file ({err})") from err
    intensities = _checked(values, str(path))
    if ppm is not None and np.shape(ppm) != intensities.shape:
        raise InputError(
            f"{path}: ppm axis has {np.size(ppm)} points, intensities {intensities.size}"
        )
    return Spectrum(
        intensities, None if ppm is None else np.asarray(ppm, float), {}, str(path), "npz"
    )


def _read_csv(path: Path) -> Spectrum:
    try:
        table = np.loadtxt(path, delimiter=",", comments="#", ndmin=2, dtype=np.float64)
    except ValueError:
        try:  # a header line
            table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
        except ValueError as err:
            raise InputError(
                f"{path}: not a two-column CSV of numbers (ppm, intensity): {err}"
            ) from err
    if table.size == 0:
        raise InputError(f"{path}: the spectrum is empty")
    if table.shape[1] != 2:
        raise InputError(f"{path}: expected two columns (ppm, intensity), got {table.shape[1]}")
    if not np.all(np.isfinite(table[:, 0])):
        raise InputError(f"{path}: the ppm column has NaN/Inf values")
    return Spectrum(_checked(table[:, 1], str(path)), table[:, 0].copy(), {}, str(path), "csv")


_READERS = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv}


def read_spectrum(path: str | os.PathLike) -> Spectrum:
    """Read one 1D spectrum; the format follows the path (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unknown format (known: {', '.join(sorted(_READERS))})")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    return reader(path)
