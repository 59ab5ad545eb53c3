"""The confidence band written with its output, atomically (runtime/atomic.py).

.npz and HDF5 outputs hold it as one more array, ``confidence``, beside ``intensities``; any
other output gets a sidecar: ``<output stem>_confidence.npy`` beside a file, ``confidence.npy``
inside a Bruker output's procno folder. The band is each output point's estimated error
sigma, in the output's units (runtime/confidence.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from nmrladder.runtime.atomic import atomic_path

#: The band's name: the array in .npz / HDF5 outputs, the sidecar's suffix elsewhere.
BAND_ARRAY = "confidence"
_INSIDE = ("npz", "hdf5")  # formats that hold the band as an array of their own


def band_sidecar(written: str | Path) -> Path:
    """Where the band of the output ``written`` goes when its format cannot hold it."""
    written = Path(written)
    if written.is_dir():  # a Bruker pdata/<procno> folder
        return written / f"{BAND_ARRAY}.npy"
    return written.with_name(f"{written.stem}_{BAND_ARRAY}.npy")


def write_with_band(spectrum, destination: str | Path, y: np.ndarray, band: np.ndarray | None):
    """Write ``y`` as ``spectrum``'s output at ``destination`` (io.write_spectrum) and
    ``band`` with it: (the output's path, the file holding the band, None without one).

    Without a band, a sidecar an earlier run left beside this output is removed: it belonged
    to the output this write replaces.
    """
    from nmrladder.runtime.io import SUFFIX_FORMATS, write_spectrum

    destination = Path(destination)
    if band is None:
        written = write_spectrum(spectrum, destination, y)
        band_sidecar(written).unlink(missing_ok=True)
        return written, None
    band = np.ascontiguousarray(band, dtype=np.float32)
    fmt = "bruker" if spectrum.format == "bruker" else SUFFIX_FORMATS.get(
        destination.suffix.lower(), spectrum.format
    )
    if fmt in _INSIDE:
        with atomic_path(destination) as tmp:
            write_spectrum(spectrum, tmp, y)  # the output's own format, then the band added
            _add_array(tmp, fmt, band)
        return destination, destination
    written = write_spectrum(spectrum, destination, y)
    sidecar = band_sidecar(written)
    with atomic_path(sidecar) as tmp:
        np.save(tmp, band)
    return written, sidecar


def _add_array(path: Path, fmt: str, band: np.ndarray) -> None:
    """Add the band to the (temporary, not yet renamed) output ``path``."""
    if fmt == "hdf5":
        import h5py  # imported on use, as runtime/io.py does

        with h5py.File(path, "a") as handle:
            handle.create_dataset(BAND_ARRAY, data=band)
        return
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays[BAND_ARRAY] = band
    buffer = io.BytesIO()  # a buffer: np.savez would append .npz to another suffix
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getbuffer())


__all__ = ["BAND_ARRAY", "band_sidecar", "write_with_band"]
