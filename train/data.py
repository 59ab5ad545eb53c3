"""Training data: ladders -> prepared ladders -> batches of crops (NumPy only, no torch).

Sources: simulated ladders (``Ladders`` in memory, or the simulator's HDF5 file streamed with
``open_ladders``), a user's real ladders listed in a manifest CSV (:func:`read_manifest`), or
a plain array [N, R, L].

:func:`prepare` runs the runtime preprocessing (``preprocess_ladders``: alignment, masks,
re-scaling, noise, T_hat, pseudo-truth s_hat) chunk by chunk and builds what the network
trains on. The frame and amplitude choices (docs/training.md, "Data pipeline"):

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

:class:`BatchSampler` draws batches deterministically from (seed, step): several rungs of
the same ladders, the same crop window for every rung of a ladder, optionally centred on
peaks. Large sets are prepared to an HDF5 cache (:func:`prepare` with ``out=``) and read
back lazily (:class:`PreparedFile`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
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


# --------------------------------------------------------------------------- sources


@dataclass
class ManifestLadders:
    """Real ladders read from a manifest: x [N, R, L] float32 (rung 0 the noisiest), T [N]
    (NaN where the manifest gives none), the sample names and the file of every rung."""

    x: np.ndarray
    T: np.ndarray
    samples: list[str]
    paths: list[list[str]]
    source: str = ""


def read_manifest(path: str | os.PathLike) -> ManifestLadders:
    """Read a manifest CSV of real ladders.

    Columns (header row required): ``sample``, ``rung``, ``path`` and optionally ``T``. One row
    per spectrum; ``rung`` counts from 0 (the lowest SNR) and every sample needs rungs
    0..R-1, R >= 2; ``path`` is read with :func:`nmrladder.runtime.io.read_spectrum` (relative
    paths are relative to the manifest's folder); ``T`` (> 1) may be given per sample (on any
    of its rows; all given values must agree). Every sample must have the same number of
    rungs and every spectrum the same length, so ladders stack into [N, R, L].
    Errors name the manifest line.
    """
    from nmrladder.runtime.io import read_spectrum

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: not a readable CSV manifest ({err})") from None
    missing = [c for c in ("sample", "rung", "path") if c not in header]
    if not rows or missing:
        raise InputError(
            f"{path}: a manifest needs a header with columns sample, rung, path[, T] and at "
            f"least one row" + (f" (missing: {', '.join(missing)})" if rows else "")
        )
    by_sample: dict[str, dict[int, tuple[int, str]]] = {}
    t_values: dict[str, tuple[int, float]] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"{path}, line {line}"
        sample, rung_text, file_text = row["sample"], row["rung"], row["path"]
        if not sample or not file_text:
            raise InputError(f"{where}: empty sample or path")
        try:
            rung = int(rung_text)
        except ValueError:
            raise InputError(f"{where}: rung {rung_text!r} is not an integer") from None
        if rung < 0:
            raise InputError(f"{where}: rung {rung} is negative (rungs count from 0)")
        if rung in by_sample.setdefault(sample, {}):
            other = by_sample[sample][rung][0]
            raise InputError(f"{where}: sample {sample!r} rung {rung} already given on line "
                             f"{other}")
        by_sample[sample][rung] = (line, file_text)
        t_text = row.get("T", "")
        if t_text:
            try:
                t = float(t_text)
            except ValueError:
                raise InputError(f"{where}: T {t_text!r} is not a number") from None
            if not t > 1 or not math.isfinite(t):
                raise InputError(f"{where}: T must be > 1, got {t_text}")
            if sample in t_values and t_values[sample][1] != t:
                raise InputError(f"{where}: T={t} for sample {sample!r} disagrees with "
                                 f"T={t_values[sample][1]} on line {t_values[sample][0]}")
            t_values[sample] = (line, t)

    samples = list(by_sample)
    ladders, paths, n_rungs, length = [], [], None, None
    for sample in samples:
        rungs = by_sample[sample]
        first_line = min(line for line, _ in rungs.values())
        where = f"{path}, line {first_line} (sample {sample!r})"
        expected = list(range(len(rungs)))
        if sorted(rungs) != expected:
            absent = sorted(set(range(max(rungs) + 1)) - set(rungs))
            raise InputError(f"{where}: rungs must be 0..R-1 without gaps; missing rung(s) "
                             f"{absent}")
        if len(rungs) < 2:
            raise InputError(f"{where}: a ladder needs at least 2 rungs, got {len(rungs)}")
        if n_rungs is not None and len(rungs) != n_rungs:
            raise InputError(f"{where}: {len(rungs)} rungs, but the first sample has {n_rungs} "
                             "(every ladder of a manifest needs the same number of rungs)")
        n_rungs = len(rungs)
        spectra, files = [], []
        for k in expected:
            line, file_text = rungs[k]
            file = Path(file_text)
            if not file.is_absolute():
                file = path.parent / file
            try:
                spectrum = read_spectrum(file).intensities
            except InputError as err:
                raise InputError(f"{path}, line {line}: {err}") from None
            if spectra and spectrum.size != spectra[0].size:
                raise InputError(
                    f"{path}, line {line}: {file} has {spectrum.size} points, rung 0 of sample "
                    f"{sample!r} has {spectra[0].size} (all rungs of a ladder need one length)"
                )
            if length is not None and spectrum.size != length:
                raise InputError(
                    f"{path}, line {line}: {file} has {spectrum.size} points, the first sample's "
                    f"spectra have {length} (every spectrum of a manifest needs one length)"
                )
            length = spectrum.size
            spectra.append(spectrum)
            files.append(str(file))
        ladders.append(np.stack(spectra))
        paths.append(files)
    T = np.array([t_values[s][1] if s in t_values else np.nan for s in samples])
    return ManifestLadders(np.stack(ladders).astype(np.float32), T, samples, paths, str(path))


class _Source:
    """Uniform view of a ladder collection: n, rungs, length, and chunks of (x, true T)."""

    def __init__(self, n: int, rungs: int, length: int, chunks, name: str, has_true_t: bool):
        self.n, self.rungs, self.length = n, rungs, length
        self._chunks = chunks
        self.name = name
        self.has_true_t = has_true_t
        self.opened = None  # a file this source opened itself (closed by close())
        self.parts: list[_Source] = []  # the sources a concatenation joins

    def close(self) -> None:
        for part in self.parts:
            part.close()
        if self.opened is not None:
            self.opened.close()
            self.opened = None

    def iter_chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        return self._chunks(size)


def _array_source(x: np.ndarray, T: np.ndarray | None, name: str) -> _Source:
    x = np.asarray(x)
    if x.ndim != 3:
        raise InputError(f"{name}: expected ladders of shape [N, R, L], got {x.shape}")

    def chunks(size):
        for start in range(0, x.shape[0], size):
            stop = min(start + size, x.shape[0])
            yield x[start:stop], None if T is None else np.asarray(T[start:stop], float)

    has_t = T is not None and bool(np.all(np.isfinite(T)))
    return _Source(x.shape[0], x.shape[1], x.shape[2], chunks, name, has_t)


def _concatenated(sources: list[_Source]) -> _Source:
    """Several sources one after the other (same rungs and length), e.g. ladders simulated
    at several rung-0 SNRs."""
    if not sources:
        raise InputError("no training ladders given")
    first = sources[0]
    for other in sources[1:]:
        if (other.rungs, other.length) != (first.rungs, first.length):
            for s in sources:
                s.close()
            raise InputError(
                f"{other.name}: ladders of {other.rungs} rungs x {other.length} points do not "
                f"stack with {first.name}'s {first.rungs} x {first.length}"
            )

    def chunks(size):
        for s in sources:
            yield from s.iter_chunks(size)

    joined = _Source(sum(s.n for s in sources), first.rungs, first.length, chunks,
                     " + ".join(s.name for s in sources), all(s.has_true_t for s in sources))
    joined.parts = sources
    return joined


def as_source(data: Any) -> _Source:
    """A ladder source from Ladders, a LadderFile, ManifestLadders, an array [N, R, L], a
    path (a simulated-ladders .h5 file, the folder holding one, or a manifest .csv), or a
    list of those (concatenated)."""
    from nmrladder.train.simulate import LadderFile, Ladders, open_ladders

    if isinstance(data, _Source):
        return data
    if isinstance(data, (list, tuple)):
        return _concatenated([as_source(d) for d in data])
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir() and (path / "ladders.h5").exists():
            path = path / "ladders.h5"  # the folder `nmrladder simulate --out` writes
        if path.suffix.lower() == ".csv":
            return as_source(read_manifest(path))
        if not path.exists():
            raise InputError(f"{path}: no such file (expected ladders .h5 or a manifest .csv)")
        lf = open_ladders(path)
        source = as_source(lf)
        source.opened = lf
        return source
    if isinstance(data, Ladders):
        return _array_source(data.x, data.T, "ladders")
    if isinstance(data, ManifestLadders):
        return _array_source(data.x, data.T, data.source or "manifest")
    if isinstance(data, LadderFile):
        lf = data

        def chunks(size):
            for start in range(0, len(lf), size):
                sel = slice(start, min(start + size, len(lf)))
                yield lf.file["x"][sel], lf.file["T"][sel]

        return _Source(len(lf), lf.rungs, lf.length, chunks, str(lf.path), True)
    if isinstance(data, np.ndarray):
        return _array_source(data, None, "ladders")
    raise InputError(f"cannot read training ladders from a {type(data).__name__}")


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


def _preprocess_keeping(x: np.ndarray, options: Mapping[str, Any], threads: int | None,
                        name: str, start: int):
    """preprocess_ladders over x [n, R, L], leaving out the ladders it refuses.

    Returns (result over the kept ladders, kept indices into x, skipped [(index in the whole
    source, reason)]). A real set can hold a ladder the preprocessing cannot use (e.g. a
    peak mask over the whole spectrum); that must not stop the training on the others.
    """
    from nmrladder.runtime.preprocess import (
        LadderBatchResult,
        preprocess_ladder,
        preprocess_ladders,
    )

    try:
        res = preprocess_ladders(x, name=name, threads=threads, **options)
        return res, np.arange(len(x)), []
    except InputError:
        pass  # find the culprits one by one
    results, kept, skipped = [], [], []
    for i in range(len(x)):
        try:
            results.append(preprocess_ladder(x[i], name=f"ladder {start + i}", **options))
            kept.append(i)
        except InputError as err:
            skipped.append((start + i, str(err)))
    if not results:
        raise InputError(f"{name}: the preprocessing refused every ladder; first: "
                         f"{skipped[0][1]}")
    names = [f.name for f in dataclass_fields(LadderBatchResult) if f.name != "params"]
    stacked = {k: np.stack([getattr(r, k) for r in results]) for k in names}
    return LadderBatchResult(**stacked, params=results[0].params), np.array(kept), skipped


def _prepare_chunk(
    x: np.ndarray, T_true: np.ndarray | None, options: Mapping[str, Any], t_source: str,
    rescale: bool, threads: int | None, name: str, start: int = 0,
) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """Prepared arrays (see _FIELDS) for one chunk of ladders x [n, R, L], and the ladders
    left out [(index, reason)]."""
    from nmrladder.runtime.preprocess import fuse, robust_scale_batch

    res, kept, skipped = _preprocess_keeping(x, options, threads, name, start)
    x = x[kept]
    T_true = None if T_true is None else np.asarray(T_true)[kept]
    shifts = np.asarray(res.shifts, dtype=np.float64)
    roll = np.rint(shifts).astype(np.int64)
    frac = shifts - roll
    if rescale:
        scales = np.asarray(res.scales, dtype=np.float64)
        s_hat = res.s_hat.astype(np.float64)
        sigma = np.asarray(res.sigma, dtype=np.float64)
    else:
        # METHOD 2.2 switched off (ablation): every rung keeps its own normalisation; the
        # pseudo-truth is fused from the aligned rungs without their scales.
        scales = np.ones_like(res.scales, dtype=np.float64)
        raw = res.aligned / res.scales[..., None]
        s_hat = np.stack([fuse(raw[i], res.weights[i]) for i in range(len(raw))])
        sigma = res.sigma / res.scales
    unit = sigma[:, 0]
    inputs = to_input_frame(x, res.offsets, roll, scales, unit)
    n, R, L = inputs.shape
    centers, sigmas = robust_scale_batch(inputs.reshape(n * R, L), threads=threads)
    if t_source == "true":
        if T_true is None or not np.all(np.isfinite(T_true)):
            raise InputError(f"{name}: data.t_source='true' needs the true T of every ladder "
                             "(simulated data, or a T column in the manifest)")
        T = np.asarray(T_true, dtype=np.float64)
    else:
        T = np.asarray(res.t_hat, dtype=np.float64)
    return {
        "inputs": inputs,
        "s_hat": (s_hat / unit[:, None]).astype(np.float32),
        "frac": frac,
        "roll": roll,
        "offsets": np.asarray(res.offsets, dtype=np.float64),
        "scales": scales,
        "unit": unit,
        "noise": sigma / unit[:, None],
        "centers": centers.reshape(n, R),
        "sigmas": sigmas.reshape(n, R),
        "peak_mask": res.peak_mask.astype(np.uint8),
        "base_mask": res.base_mask.astype(np.uint8),
        "T": T,
        "t_hat": np.asarray(res.t_hat, dtype=np.float64),
    }, skipped


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
    """Prepared ladders in memory; arrays as named in the module docstring.

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


def prepare(
    data: Any,
    preprocess_options: Mapping[str, Any] | None = None,
    *,
    t_source: str = "t_hat",
    rescale: bool = True,
    threads: int | None = None,
    chunk: int = 256,
    out: str | os.PathLike | None = None,
    progress: bool = False,
) -> PreparedLadders | PreparedFile:
    """Prepare ladders for training (see the module docstring).

    data: Ladders, a LadderFile, ManifestLadders, an array [N, R, L], or a path (.h5 of
    simulated ladders, or a manifest .csv). preprocess_options: keywords of
    ``preprocess_ladders``. t_source: "t_hat" or "true" (needs the true T). rescale: False
    keeps every rung's own normalisation (METHOD 2.2 off, an ablation). Ladders are
    preprocessed ``chunk`` at a time; with ``out`` the result streams to an HDF5 cache at
    that path (written atomically) and comes back as a lazily read :class:`PreparedFile`,
    else everything is held in memory.
    """
    if t_source not in ("t_hat", "true"):
        raise InputError(f"t_source={t_source!r}: use 't_hat' or 'true'")
    source = as_source(data)
    options = dict(preprocess_options or {})
    meta = {
        "source": source.name,
        "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "t_source": t_source,
        "rescale": bool(rescale),
        "units": "rung-0 noise sigma of each ladder",
    }
    if t_source == "true" and not source.has_true_t:
        raise InputError(f"{source.name}: data.t_source='true' needs the true T of every "
                         "ladder (simulated data, or a T column in the manifest)")
    bar = _progress(source.n, progress)
    try:
        return _prepare_source(source, options, t_source, rescale, threads, chunk, out, meta,
                               bar)
    finally:
        bar.close()
        source.close()


def _prepare_source(source, options, t_source, rescale, threads, chunk, out, meta, bar):
    """prepare()'s work: every chunk through _prepare_chunk, into memory or the cache."""
    skipped: list[tuple[int, str]] = []

    def parts():
        start = 0
        for x, T in source.iter_chunks(chunk):
            part, left_out = _prepare_chunk(x, T, options, t_source, rescale, threads,
                                            f"{source.name}[{start}:{start + len(x)}]", start)
            skipped.extend(left_out)
            start += len(x)
            bar.update(len(x))
            yield part

    def note() -> None:
        meta["skipped"] = [[i, why] for i, why in skipped]
        if skipped:
            first = skipped[0]
            warnings.warn(f"{source.name}: left out {len(skipped)} of {source.n} ladders the "
                          f"preprocessing refused (first: {first[1]})",
                          stacklevel=3)

    if out is not None:
        with _PreparedWriter(out, source.n, source.rungs, source.length, meta) as writer:
            for part in parts():
                writer.write(part)
            note()
            writer.set_meta(meta)
        return open_prepared(out)
    chunks = list(parts())
    note()
    arrays = {name: np.concatenate([p[name] for p in chunks]) for name in _FIELDS}
    for name in ("peak_mask", "base_mask"):
        arrays[name] = arrays[name].view(bool)
    return PreparedLadders(**arrays, meta=meta)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="ladder", desc="prepare", disable=not enabled)


# --------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """One training batch of B ladders x K rungs, crops of C points (NumPy).

    inputs, targets [B, K, C] float32: rung inputs and s_hat in each input's frame (rung-0
    noise units); peak_mask, base_mask [B, C] bool; centers, sigmas [B, K] float32: the
    canonical network scaling of each row; frac [B, K]: f_k, the offset of each input from
    the common frame (points); rungs [B, K] int64: rung indices (column 0 is rung 0); T [B];
    samples [B]: ladder indices; starts [B]: first point of each crop.
    """

    inputs: np.ndarray
    targets: np.ndarray
    peak_mask: np.ndarray
    base_mask: np.ndarray
    centers: np.ndarray
    sigmas: np.ndarray
    frac: np.ndarray
    rungs: np.ndarray
    T: np.ndarray
    samples: np.ndarray
    starts: np.ndarray


@dataclass(frozen=True)
class RungPlan:
    """Which rungs a batch holds: rung 0 always; with mode "all" every rung, with "sampled"
    ``extra`` (lo, hi) rungs drawn per ladder from ``min_rung..R-1`` (at least 1)."""

    mode: str = "sampled"
    extra: tuple[int, int] = (1, 2)
    min_rung: int = 1


def step_rng(seed: int, step: int, stream: int) -> np.random.Generator:
    """The generator of one purpose (stream) at one step: a pure function of its arguments,
    so a resumed run draws exactly what an uninterrupted one would."""
    return np.random.default_rng(np.random.SeedSequence([seed, step, stream]))


class BatchSampler:
    """Deterministic batches from (seed, step) over prepared ladders.

    Ladder order: epoch e = step // steps_per_epoch visits a permutation of all ladders
    drawn from (seed, e); the last batch of an epoch is completed from the permutation's
    start. Rungs: see :class:`RungPlan`. Crops: ``crop_length`` points, the same window for
    every rung of a ladder; with probability ``peak_crop_fraction`` centred (within +-1/4
    crop) on a random point of the peak mask, else uniform.
    """

    _ORDER, _RUNGS, _CROPS = 0, 1, 2

    def __init__(self, data: Prepared, batch_size: int, crop_length: int, seed: int,
                 peak_crop_fraction: float = 0.5):
        if crop_length > data.length:
            raise InputError(f"data.crop_length={crop_length} exceeds the spectra's length "
                             f"{data.length}; set data.crop_length <= {data.length}")
        if len(data) < 1:
            raise InputError("no ladders to train on")
        self.data = data
        self.batch_size = int(batch_size)
        self.crop_length = int(crop_length)
        self.seed = int(seed)
        self.peak_crop_fraction = float(peak_crop_fraction)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def ladder_indices(self, step: int) -> np.ndarray:
        """The ladders of batch `step` [B]."""
        n, b = len(self.data), self.batch_size
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = step_rng(self.seed, epoch, self._ORDER).permutation(n)
        order = np.concatenate([order] * math.ceil(b / n + 1)) if n < 2 * b else order
        idx = order[pos * b:(pos + 1) * b]
        if idx.size < b:
            idx = np.concatenate([idx, order[:b - idx.size]])
        return idx

    def rung_indices(self, step: int, plan: RungPlan) -> np.ndarray:
        """Rungs [B, K] of batch `step`: column 0 is rung 0, the rest sorted per row."""
        R, b = self.data.rungs, self.batch_size
        if plan.mode == "all":
            return np.tile(np.arange(R), (b, 1))
        pool = np.arange(max(1, plan.min_rung), R)
        rng = step_rng(self.seed, step, self._RUNGS)
        lo, hi = plan.extra
        n_extra = min(int(rng.integers(lo, hi + 1)), pool.size)
        extra = np.stack([np.sort(rng.choice(pool, n_extra, replace=False)) for _ in range(b)])
        return np.concatenate([np.zeros((b, 1), dtype=np.int64), extra.astype(np.int64)], 1)

    def crop_starts(self, step: int, peak_mask: np.ndarray) -> np.ndarray:
        """First point of each crop [B], given the ladders' peak masks [B, L]."""
        L, C = self.data.length, self.crop_length
        rng = step_rng(self.seed, step, self._CROPS)
        starts = rng.integers(0, L - C + 1, size=peak_mask.shape[0])
        centred = rng.random(peak_mask.shape[0]) < self.peak_crop_fraction
        jitter = rng.integers(-(C // 4), C // 4 + 1, size=peak_mask.shape[0])
        for b in np.flatnonzero(centred):
            points = np.flatnonzero(peak_mask[b])
            if points.size:
                centre = points[rng.integers(points.size)] + jitter[b]
                starts[b] = np.clip(centre - C // 2, 0, L - C)
        return starts

    def batch(self, step: int, plan: RungPlan = RungPlan()) -> Batch:
        """Batch number `step` (0-based) under the rung plan."""
        samples = self.ladder_indices(step)
        arrays = self.data.read(samples)
        rungs = self.rung_indices(step, plan)
        starts = self.crop_starts(step, arrays["peak_mask"])
        window = starts[:, None] + np.arange(self.crop_length)[None, :]  # [B, C]
        rows = np.arange(len(samples))[:, None]
        frac = arrays["frac"][rows, rungs]  # [B, K]
        inputs = arrays["inputs"][rows, rungs]  # [B, K, L]
        inputs = np.take_along_axis(inputs, window[:, None, :], axis=-1)
        # s_hat moved into each input's frame (band-limited: no smoothing), then cropped.
        targets = fractional_shift(arrays["s_hat"][:, None, :], frac)
        targets = np.take_along_axis(targets, window[:, None, :], axis=-1)
        return Batch(
            inputs=inputs.astype(np.float32),
            targets=targets.astype(np.float32),
            peak_mask=np.take_along_axis(arrays["peak_mask"], window, axis=-1),
            base_mask=np.take_along_axis(arrays["base_mask"], window, axis=-1),
            centers=arrays["centers"][rows, rungs].astype(np.float32),
            sigmas=arrays["sigmas"][rows, rungs].astype(np.float32),
            frac=frac,
            rungs=rungs,
            T=arrays["T"].astype(np.float64),
            samples=samples,
            starts=starts,
        )


def prepare_from_config(
    data: Any,
    config: Mapping[str, Any],
    cache_dir: str | os.PathLike | None = None,
    name: str = "train",
    progress: bool = False,
) -> PreparedLadders | PreparedFile:
    """:func:`prepare` with the options of a training config's [data] section.

    data.cache: "memory", "disk" (cache_dir/<name>.h5, needs cache_dir) or "auto" (disk
    when the prepared set would exceed data.memory_limit_mb and cache_dir is given).
    """
    from nmrladder.train.config import preprocess_options

    d = config["data"]
    source = as_source(data)
    size_mb = prepared_nbytes(source.n, source.rungs, source.length) / 2**20
    disk = d["cache"] == "disk" or (d["cache"] == "auto" and size_mb > d["memory_limit_mb"])
    if disk and cache_dir is None:
        if d["cache"] == "disk":
            raise InputError("data.cache='disk' needs a folder for the cache")
        disk = False
    out = Path(cache_dir) / f"{name}.h5" if disk else None
    return prepare(source, preprocess_options(config), t_source=d["t_source"],
                   rescale=d["rescale"], threads=config["run"]["threads"],
                   chunk=d["prepare_chunk"], out=out, progress=progress)
