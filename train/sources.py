"""Training ladders from their sources: a manifest CSV of real ladders, simulated ladders (in
memory or the simulator's HDF5 file, streamed), a plain array [N, R, L], or several of those
one after the other.

:func:`read_manifest` reads a user's real ladders; :func:`as_source` gives every source one
view (number, rungs, length and chunks of (x, true T)), which the preparation
(:mod:`nmrladder.train.prepare`) reads chunk by chunk.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nmrladder.runtime.errors import InputError


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
