"""The simulated data set: the ``Ladders`` container, its description and its HDF5 file
(written atomically, read lazily sample by sample)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nmrladder import __version__
from nmrladder.runtime.atomic import atomic_path
from nmrladder.runtime.conventions import SHIFT_CONVENTION, SNR_CONVENTION
from nmrladder.runtime.errors import InputError
from nmrladder.train.sim.options import NORM_METHODS, SimConfig

FORMAT_NAME = "nmrladder-ladders"
FORMAT_VERSION = 1

ORIENTATION = (
    "ppm decreases with index: ppm[i] = ppm0 - i * sw_ppm / L, point L // 2 is the carrier "
    "(the FID is built as exp(-2 pi i nu t), so FFT + fftshift gives this order directly)"
)

DESCRIPTION = (
    "Simulated SNR ladders: x[n, k] is rung k of sample n, normalised; "
    "x * norm_scale + norm_offset = truth shifted by the rung's drift + noise (truth units, "
    "tallest non-solvent peak = 1); rung k's noise std is noise_sigma[n, k] = 1 / snr[n, k]."
)


#: Per-sample acquisition fields of ``Ladders.acq`` (and of the HDF5 group ``acq``).
ACQ_FIELDS: dict[str, tuple[str, str]] = {
    "family": ("U12", "spectrum family (empty: the nucleus' legacy preset)"),
    "nucleus": ("U8", "observed nucleus: 1H, 13C, 19F or 31P"),
    "spectrometer_mhz": ("f8", "spectrometer 1H frequency, MHz"),
    "mhz": ("f8", "observe frequency of the nucleus, MHz (Hz per ppm)"),
    "sw_ppm": ("f8", "spectral width, ppm"),
    "sw_hz": ("f8", "spectral width, Hz"),
    "carrier_ppm": ("f8", "carrier, ppm (point L // 2)"),
    "ppm0": ("f8", "ppm of point 0 (the highest ppm)"),
    "td": ("i8", "acquired complex FID points (length // zero_fill)"),
    "zero_fill": ("i8", "zero-filling factor"),
    "aq_s": ("f8", "acquisition time, s"),
    "lineshape": ("U12", "lorentzian, gaussian or voigt"),
    "lw_hz": ("f8", "drawn line width (FWHM before apodization), Hz"),
    "gauss_hz": ("f8", "Gaussian FWHM shared by all lines, Hz (0: none)"),
    "lw_floor_hz": ("f8", "Lorentzian floor imposed by min_decay, Hz"),
    "lb_hz": ("f8", "exponential apodization, Hz (0: none)"),
    "phase0_deg": ("f8", "zero-order phase error, degrees"),
    "phase1_deg": ("f8", "first-order phase error over the whole width, pivot at carrier, deg"),
    "baseline_max": ("f8", "largest |baseline distortion|, truth units"),
    "solvent_ppm": ("f8", "solvent line position, ppm (NaN: none)"),
    "solvent_height": ("f8", "solvent height over the tallest other peak (NaN: none)"),
    "reference_ppm": ("f8", "reference singlet position, ppm (NaN: none)"),
    "ref_peak_index": ("f8", "point (un-drifted) of the peak used by 'reference' normalisation"),
    "n_multiplets": ("i8", "number of multiplets (13C: singlets)"),
    "n_weak": ("i8", "number of weak peaks near the noise floor"),
    "n_lines": ("i8", "number of lines in all"),
    "n_regions": ("i8", "drift regions (1: global drift only)"),
}


@dataclass
class Ladders:
    """A batch of simulated SNR ladders.

    Attributes
    ----------
    x : float32 [N, R, L]
        Normalised rungs; rung 0 has the lowest SNR.
    truth : float32 [N, L]
        Noise-free real spectrum, un-drifted frame, truth units (the tallest non-solvent
        peak has height 1); includes the phase errors and the baseline distortion.
    truth_peaks : float32 [N, L]
        The same, lines only (no baseline distortion; the solvent included).
    shifts : float64 [N, R]
        Global drift of each rung, points (``shifted[i] = x[i - d]``).
    region_shifts : float64 [N, R, G]
        Drift of each region, points; ``G = 1`` and ``region_shifts[..., 0] == shifts``
        without non-linear drift. Unused regions repeat the global shift.
    region_edges : int64 [N, G + 1]
        Region g covers points ``[edges[g], edges[g + 1])`` of the un-drifted frame;
        unused trailing edges equal L.
    T : float64 [N]
        SNR ratio per rung used for the sample.
    snr : float64 [N, R]
        SNR of each rung under ``SNR_CONVENTION`` (``S * T**k * (1 + jitter)``).
    noise_sigma : float64 [N, R]
        Real-part noise std, truth units (``1 / snr``).
    norm_method : int8 [N, R]
        Index into ``NORM_METHODS``.
    norm_scale, norm_offset : float64 [N, R]
        ``x * norm_scale + norm_offset`` = rung content in truth units.
    acq : dict of str -> array [N]
        Acquisition parameters, see ``ACQ_FIELDS``.
    meta : dict
        seed, options, version, format_version, conventions, description.
    clean : float32 [N, R, L] or None
        Noise-free content of each rung (option ``keep_clean``).
    oracle : float32 [N, L] or None
        The structure-known oracle's estimate of rung 0's content, rung 0's frame, truth units
        (option ``keep_oracle``): a least-squares fit of every line's amplitude (and of the
        baseline's FID points) to the noisy rung 0, knowing each line's position, width and
        the processing (``sample.oracle_fit``).
    """

    x: np.ndarray
    truth: np.ndarray
    truth_peaks: np.ndarray
    shifts: np.ndarray
    region_shifts: np.ndarray
    region_edges: np.ndarray
    T: np.ndarray
    snr: np.ndarray
    noise_sigma: np.ndarray
    norm_method: np.ndarray
    norm_scale: np.ndarray
    norm_offset: np.ndarray
    acq: dict[str, np.ndarray]
    meta: dict[str, Any]
    clean: np.ndarray | None = None
    oracle: np.ndarray | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def rungs(self) -> int:
        return self.x.shape[1]

    @property
    def length(self) -> int:
        return self.x.shape[2]

    @property
    def norm_names(self) -> np.ndarray:
        """Normalisation names, [N, R] str."""
        return np.asarray(NORM_METHODS)[self.norm_method]

    def ppm_axis(self, i: int) -> np.ndarray:
        """ppm of every point of sample i (float64 [L], decreasing with index)."""
        return self.acq["ppm0"][i] - np.arange(self.length) * (self.acq["sw_ppm"][i] / self.length)

    def denormalised(self, i: int) -> np.ndarray:
        """Rungs of sample i in truth units, float64 [R, L]: shifted truth + noise."""
        return self.x[i] * self.norm_scale[i][:, None] + self.norm_offset[i][:, None]

    def shifted_truth(self, i: int) -> np.ndarray:
        """Noise-free content of each rung of sample i, float64 [R, L], truth units.

        ``clean`` where kept; else the Fourier shift of the truth by each rung's drift (exact
        for global drift with zero_fill >= 2). For a non-linear drift without ``clean``,
        each region of the lines is shifted on its own, which is exact but for the line
        tails that cross a region edge.
        """
        if self.clean is not None:
            return self.clean[i].astype(np.float64)
        truth = self.truth[i].astype(np.float64)
        n_regions = int(self.acq["n_regions"][i])
        if n_regions == 1:
            return np.stack([fourier_shift_real(truth, d) for d in self.shifts[i]])
        peaks = self.truth_peaks[i].astype(np.float64)
        edges = self.region_edges[i]
        out = np.stack([fourier_shift_real(truth - peaks, d) for d in self.shifts[i]])
        for g in range(n_regions):
            part = np.zeros_like(peaks)
            part[edges[g]:edges[g + 1]] = peaks[edges[g]:edges[g + 1]]
            out += np.stack([fourier_shift_real(part, d) for d in self.region_shifts[i, :, g]])
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write to HDF5 atomically (temporary file in the same folder, then rename)."""
        with atomic_h5(path) as f:
            optional = [name for name in OPTIONAL_ARRAYS if getattr(self, name) is not None]
            writer = LadderWriter(f, len(self), self.rungs, self.length,
                                  self.region_shifts.shape[2], optional, self.meta)
            writer.write(0, _as_arrays(self))
        return Path(path)


def fourier_shift_real(x: np.ndarray, d: float) -> np.ndarray:
    """Band-limited circular shift of a real vector by d points: ``out[i] = x[i - d]``."""
    n = x.size
    spec = np.fft.rfft(x) * np.exp(-2j * np.pi * np.arange(n // 2 + 1) * d / n)
    return np.fft.irfft(spec, n=n)


def dataset_meta(cfg: SimConfig) -> dict[str, Any]:
    """Description of a data set; options as JSON types so that a file round-trips exactly."""
    options = json.loads(json.dumps(asdict(cfg.opts)))
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "nmrladder_version": __version__,
        "seed": cfg.seed,
        "rungs": cfg.rungs,
        "length": cfg.length,
        "T": list(cfg.T) if isinstance(cfg.T, tuple) else cfg.T,
        "snr": cfg.snr,
        "options": options,
        "snr_convention": SNR_CONVENTION,
        "shift_convention": SHIFT_CONVENTION,
        "orientation": ORIENTATION,
        "norm_methods": list(NORM_METHODS),
        "first_point_halving": True,
        "description": DESCRIPTION,
    }


#: Arrays a data set holds only when asked (options keep_clean, keep_oracle).
OPTIONAL_ARRAYS = ("clean", "oracle")


def _array_specs(R: int, L: int, G: int, optional: Sequence[str]) -> dict[str, tuple[tuple, str]]:
    """Per-sample shape and dtype of every array of a data set."""
    specs = {
        "x": ((R, L), "f4"),
        "truth": ((L,), "f4"),
        "truth_peaks": ((L,), "f4"),
        "shifts": ((R,), "f8"),
        "region_shifts": ((R, G), "f8"),
        "region_edges": ((G + 1,), "i8"),
        "T": ((), "f8"),
        "snr": ((R,), "f8"),
        "noise_sigma": ((R,), "f8"),
        "norm_method": ((R,), "i1"),
        "norm_scale": ((R,), "f8"),
        "norm_offset": ((R,), "f8"),
    }
    if "clean" in optional:
        specs["clean"] = ((R, L), "f4")
    if "oracle" in optional:
        specs["oracle"] = ((L,), "f4")
    return specs


def stack_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack per-sample dicts into arrays [N, ...], acq fields into arrays [N]."""
    arrays = {k: np.stack([s[k] for s in samples]) for k in samples[0] if k != "acq"}
    arrays["acq"] = {
        k: np.array([s["acq"][k] for s in samples], dtype=dtype)
        for k, (dtype, _) in ACQ_FIELDS.items()
    }
    return arrays


def _as_arrays(ladders: Ladders) -> dict[str, Any]:
    """The arrays of a Ladders as the writer takes them."""
    arrays = {f.name: getattr(ladders, f.name) for f in fields(Ladders) if f.name != "meta"}
    for name in OPTIONAL_ARRAYS:
        if arrays[name] is None:
            del arrays[name]
    return arrays


def from_arrays(arrays: dict[str, Any], meta: dict[str, Any]) -> Ladders:
    arrays = dict(arrays)
    for name in OPTIONAL_ARRAYS:
        arrays.setdefault(name, None)
    return Ladders(meta=meta, **arrays)


_JSON_ATTRS = ("options", "norm_methods", "T")
# Spectra: one sample per chunk, so reading any sample touches one chunk.
_PER_SAMPLE_CHUNKS = ("x", "truth", "truth_peaks", "clean", "oracle")


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """An HDF5 file written at a temporary name beside path, renamed to path on success."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def _early_allocation() -> h5py.h5p.PropDCID:
    """Dataset creation properties that place every chunk when the dataset is created.

    The file layout then does not depend on the order of the writes (chunk size, workers),
    so the same seed gives the same bytes; no fill value is written, the data overwrite it.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


class LadderWriter:
    """Creates the datasets of a ladder file and writes slices of samples into them.

    Large arrays are chunked one sample per chunk (random access per sample); the small
    per-sample arrays in chunks of up to 4096 samples.
    """

    def __init__(self, f: h5py.File, n: int, R: int, L: int, G: int, optional: Sequence[str],
                 meta: dict[str, Any]):
        self.f = f
        for key, value in meta.items():
            f.attrs[key] = json.dumps(value) if key in _JSON_ATTRS else value
        for name, (shape, dtype) in _array_specs(R, L, G, optional).items():
            rows = 1 if name in _PER_SAMPLE_CHUNKS else min(n, 4096)
            f.create_dataset(name, shape=(n, *shape), dtype=dtype, chunks=(rows, *shape),
                             track_times=False, dcpl=_early_allocation())
        f["x"].attrs["axes"] = "sample, rung, point"
        f["norm_method"].attrs["names"] = json.dumps(list(NORM_METHODS))
        acq = f.create_group("acq", track_order=False)
        for name, (dtype, doc) in ACQ_FIELDS.items():
            h5_dtype = dtype.replace("U", "S")
            acq.create_dataset(name, shape=(n,), dtype=h5_dtype, chunks=(min(n, 4096),),
                               track_times=False, dcpl=_early_allocation())
            acq[name].attrs["description"] = doc

    def write(self, start: int, arrays: dict[str, Any]) -> None:
        stop = start + len(arrays["x"])
        for name, value in arrays.items():
            if name == "acq":
                for key, column in value.items():
                    if column.dtype.kind == "U":
                        column = np.char.encode(column, "ascii")
                    self.f["acq"][key][start:stop] = column
            else:
                self.f[name][start:stop] = value


class LadderFile:
    """A ladder file opened lazily; read samples by slice or index without loading it all.

    Use as a context manager::

        with open_ladders("ladders.h5") as lf:
            for batch in lf.iter_batches(256):
                ...
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as err:
            raise InputError(f"{self.path}: cannot open as HDF5 ({err})") from None
        if self.file.attrs.get("format") != FORMAT_NAME:
            self.file.close()
            raise InputError(f"{self.path}: not a nmrladder ladder file (attribute 'format')")
        version = int(self.file.attrs["format_version"])
        if version > FORMAT_VERSION:
            self.file.close()
            raise InputError(
                f"{self.path}: format_version {version} is newer than this nmrladder reads "
                f"({FORMAT_VERSION}); upgrade nmrladder"
            )
        attrs = self.file.attrs
        self.meta = {k: json.loads(v) if k in _JSON_ATTRS else _plain(v) for k, v in attrs.items()}

    def __enter__(self) -> LadderFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def __len__(self) -> int:
        return self.file["x"].shape[0]

    @property
    def rungs(self) -> int:
        return self.file["x"].shape[1]

    @property
    def length(self) -> int:
        return self.file["x"].shape[2]

    def read(self, sel: int | slice | Sequence[int] | np.ndarray = slice(None)) -> Ladders:
        """Read the samples selected by an index, a slice or an index array (any order)."""
        n = len(self)
        if isinstance(sel, slice):
            key, inverse = sel, None
        else:
            idx = np.atleast_1d(np.asarray(sel))
            if idx.dtype.kind not in "iu" or idx.ndim != 1:
                raise InputError(f"{self.path}: read() takes an index, a slice or 1-D indices")
            idx = np.where(idx < 0, idx + n, idx)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise InputError(f"{self.path}: index out of range for {n} samples")
            # h5py wants increasing unique indices: read those, then restore the order.
            key, inverse = np.unique(idx, return_inverse=True)
        arrays: dict[str, Any] = {}
        for name in self.file:
            if name == "acq":
                arrays["acq"] = {k: _decode(self.file["acq"][k][key], ACQ_FIELDS[k][0])
                                 for k in self.file["acq"] if k in ACQ_FIELDS}
            else:
                arrays[name] = self.file[name][key]
        if inverse is not None:
            arrays = {k: ({kk: vv[inverse] for kk, vv in v.items()} if k == "acq" else v[inverse])
                      for k, v in arrays.items()}
        return from_arrays(arrays, dict(self.meta))

    def iter_batches(self, batch_size: int) -> Iterator[Ladders]:
        """Consecutive batches of at most batch_size samples."""
        if batch_size < 1:
            raise InputError(f"option batch_size: must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.read(slice(start, min(start + batch_size, len(self))))


def _decode(values: np.ndarray, dtype: str) -> np.ndarray:
    return values.astype(dtype) if dtype.startswith("U") else values


def _plain(value: Any) -> Any:
    """HDF5 attribute -> plain Python (numpy scalars and bools unwrapped)."""
    return value.item() if isinstance(value, np.generic) else value


def open_ladders(path: str | os.PathLike) -> LadderFile:
    """Open a ladder file lazily (context manager; ``len``, ``read``, ``iter_batches``)."""
    return LadderFile(path)


def load_ladders(path: str | os.PathLike) -> Ladders:
    """Read a whole ladder file into memory."""
    with open_ladders(path) as lf:
        return lf.read(slice(None))
