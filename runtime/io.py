"""Reading and writing 1D NMR spectra (real part), keeping the ppm axis and the metadata.

One entry point per direction: :func:`read_spectrum` and :func:`write_spectrum`, dispatching
on the format (:func:`detect_format`); :func:`output_path_for` says where a denoised copy
goes. NMR formats (Bruker, NMRPipe, JCAMP-DX) go through nmrglue in
nmrladder.runtime.formats, Spinsolve and Varian/Agilent in nmrladder.runtime.vendors (FIDs
are processed by nmrladder.runtime.fid); plain formats (.npy, .npz, .csv, .h5/.hdf5) are
handled here. Every write is atomic. Formats, what each keeps and where outputs go:
docs/formats.md.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import stat
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from nmrladder.runtime.atomic import atomic_path, write_bytes_atomic
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.spectrum import (  # Spectrum and ReaderNote are part of this API
    ReaderNote,
    Spectrum,
    checked_intensities,
    checked_ppm,
    issue_notes,
)

__all__ = [
    "SUFFIX_FORMATS",
    "ReaderNote",
    "Spectrum",
    "detect_format",
    "output_path_for",
    "processed_path_for",
    "read_spectrum",
    "write_spectrum",
]

# File suffix -> format; a folder is Bruker, Spinsolve or Varian (by what it holds), a file
# named 1r is Bruker, and a file named fid belongs to the experiment beside it.
SUFFIX_FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".csv": "csv",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".ft": "pipe",
    ".ft1": "pipe",
    ".fid": "pipe",
    ".jdx": "jcamp",
    ".dx": "jcamp",
    ".1d": "spinsolve",
}
_NMR_FORMATS = ("bruker", "pipe", "jcamp")  # read (and written) through nmrglue
_VENDOR_FORMATS = ("spinsolve", "varian")  # read through nmrglue, written as .npz
# Formats nmrglue cannot write (or not as a processed spectrum): their outputs are .npz.
_NPZ_OUTPUT = ("jcamp", *_VENDOR_FORMATS)
_CSV_META = "# meta: "  # the CSV comment line that carries the metadata as JSON
_H5_JSON_ATTRS = "nmrladder_json_attrs"  # names of HDF5 attributes stored as JSON text
# Text attributes are written as fixed-length strings, kept inside the attribute: a
# variable-length string lives in the file's global heap, and libhdf5 can loop forever
# reading a corrupt one (docs/formats.md, "Known upstream issues"). Text longer than an
# attribute holds inline (an HDF5 header message is at most 64 KiB) stays variable-length.
_H5_INLINE_TEXT = 60_000  # bytes

# What numpy's .npy header reader raises on a corrupt header: its literal_eval and the
# tokenizer it falls back to raise SyntaxError and tokenize.TokenError besides ValueError.
_NPY_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError)
# ... and what zipfile adds for a corrupt .npz (a compression method it does not know: the
# NotImplementedError).
_NPZ_ERRORS = (*_NPY_ERRORS, zipfile.BadZipFile, zlib.error, NotImplementedError)
# What h5py raises on a corrupt file (the HDF5 library's errors as OSError, KeyError,
# ValueError or RuntimeError).
_HDF5_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError)

# .npy headers are parsed and made once each (functools.lru_cache, this many kept): a
# folder's files share one, and numpy's parsing of it (a literal_eval) is half the time
# np.load takes on a 16384-point file.
_NPY_HEADERS_KEPT = 64


def _meta_to_json(meta: dict) -> str:
    """Metadata as one JSON document (numpy values as lists/numbers, anything else as text)."""

    def default(value):
        if isinstance(value, np.ndarray | np.generic):
            return value.tolist()
        return str(value)

    return json.dumps(meta, default=default)


def _meta_from_json(text: str, source: Path) -> dict:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{source}: the stored metadata is not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise InputError(f"{source}: the stored metadata is not a JSON object")
    return meta


def _read_npy(path: Path) -> Spectrum:
    notes: list[str] = []
    try:
        with open(path, "rb") as handle:
            data = bytearray(os.fstat(handle.fileno()).st_size)  # writable, as np.load's
            size = handle.readinto(data)
        header = _npy_header(memoryview(data)[:size])
        if header is None:  # a header version this reader leaves to numpy
            values = np.load(path, allow_pickle=False)
        else:
            offset, dtype, shape, fortran_order = header
            count = math.prod(shape)  # exact: a corrupt shape must not wrap around
            if size < offset + count * dtype.itemsize:
                raise ValueError(
                    f"truncated: {size - offset} bytes of data for {count} values of {dtype}"
                )
            values = np.frombuffer(data, dtype, count, offset)
            values = values.reshape(shape, order="F" if fortran_order else "C")
    except _NPY_ERRORS as err:
        raise InputError(f"{path}: not a readable .npy file ({type(err).__name__}: {err})") from err
    intensities = checked_intensities(values, str(path), notes)
    return Spectrum(intensities, None, {}, str(path), "npy", notes)


def _npy_header(data: memoryview) -> tuple[int, np.dtype, tuple[int, ...], bool] | None:
    """(offset of the values, dtype, shape, fortran_order) of a .npy file's bytes, parsed by
    numpy's own header reader the first time a header is seen; None for a header version
    other than 1.0 and 2.0. ValueError if the bytes are not .npy."""
    if bytes(data[:6]) != b"\x93NUMPY":
        raise ValueError("no .npy header")
    version = bytes(data[6:8])
    if version not in (b"\x01\x00", b"\x02\x00"):
        return None
    width = 2 if version == b"\x01\x00" else 4
    offset = 8 + width + int.from_bytes(data[8 : 8 + width], "little")
    dtype, shape, fortran_order = _parsed_npy_header(bytes(data[:offset]), width)
    return offset, dtype, shape, fortran_order


@functools.lru_cache(maxsize=_NPY_HEADERS_KEPT)
def _parsed_npy_header(header: bytes, width: int) -> tuple[np.dtype, tuple[int, ...], bool]:
    """(dtype, shape, fortran_order) of a whole .npy header, by numpy's own reader."""
    stream = io.BytesIO(header)
    np.lib.format.read_magic(stream)
    formats = np.lib.format
    read = formats.read_array_header_1_0 if width == 2 else formats.read_array_header_2_0
    shape, fortran_order, dtype = read(stream)
    if dtype.hasobject:
        raise ValueError("object arrays are not read (they need pickle)")
    return dtype, shape, fortran_order


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
            meta_text = str(archive["meta"]) if "meta" in keys else None
    except _NPZ_ERRORS as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})") from err
    notes: list[str] = []
    intensities = checked_intensities(values, str(path), notes)
    meta = {} if meta_text is None else _meta_from_json(meta_text, path)
    ppm = checked_ppm(ppm, intensities, path)
    return Spectrum(intensities, ppm, meta, str(path), "npz", notes)


def _csv_meta(path: Path) -> dict:
    """The metadata written by _write_csv: a '# meta: {json}' line in the leading comments."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            if line.startswith(_CSV_META):
                return _meta_from_json(line[len(_CSV_META) :], path)
    return {}


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
    return Spectrum(
        checked_intensities(table[:, 1], str(path)),
        table[:, 0].copy(),
        _csv_meta(path),
        str(path),
        "csv",
    )


def _h5_value(value):
    """An HDF5 attribute as a plain Python value (numbers, text, lists); fixed-length
    strings (bytes) become text."""
    if isinstance(value, np.ndarray | np.generic) and not isinstance(value, bytes):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_h5_value(item) for item in value]
    return value


def _meta_from_h5_attrs(path: Path, attrs) -> dict:
    """HDF5 attributes as metadata; those _write_hdf5 stored as JSON text are decoded."""
    meta = {name: _h5_value(value) for name, value in attrs.items()}
    json_names = meta.pop(_H5_JSON_ATTRS, [])
    for name in [json_names] if isinstance(json_names, str) else json_names:
        if name in meta:
            meta[name] = json.loads(meta[name])
    return meta


def _read_hdf5(path: Path) -> Spectrum:
    import h5py  # imported on use: the runtime's other paths do not need it

    try:
        with h5py.File(path, "r") as handle:
            datasets = [name for name, item in handle.items() if isinstance(item, h5py.Dataset)]
            if "intensities" in datasets:
                key = "intensities"
            elif len(datasets) == 1:
                key = datasets[0]
            else:
                raise InputError(f"{path}: HDF5 needs an 'intensities' dataset (found {datasets})")
            values = handle[key][()]
            ppm = handle["ppm"][()] if "ppm" in datasets else None
            meta = _meta_from_h5_attrs(path, handle.attrs)
            meta.update(_meta_from_h5_attrs(path, handle[key].attrs))
    except _HDF5_ERRORS as err:  # json.JSONDecodeError is a ValueError
        if isinstance(err, InputError):
            raise
        raise InputError(
            f"{path}: not a readable HDF5 spectrum ({type(err).__name__}: {err})"
        ) from err
    notes: list[str] = []
    intensities = checked_intensities(values, str(path), notes)
    ppm = checked_ppm(ppm, intensities, path)
    return Spectrum(intensities, ppm, meta, str(path), "hdf5", notes)


_PLAIN_READERS = {"npy": _read_npy, "npz": _read_npz, "csv": _read_csv, "hdf5": _read_hdf5}


def _formats():
    """nmrladder.runtime.formats, imported on first use: nmrglue takes about a second to
    import, and the plain formats never need it."""
    from nmrladder.runtime import formats

    return formats


def _vendors():
    """nmrladder.runtime.vendors (Spinsolve, Varian/Agilent), imported on first use."""
    from nmrladder.runtime import vendors

    return vendors


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path``: 'bruker', 'pipe', 'jcamp', 'spinsolve', 'varian', 'npy', 'npz',
    'csv' or 'hdf5'.

    A folder is Bruker (an experiment or its pdata/<procno>), Spinsolve (acqu.par and a data
    file) or Varian (fid and procpar); a file named 1r, or fid beside acqus, is Bruker, a
    file named fid beside procpar Varian; another file goes by its suffix (SUFFIX_FORMATS).
    InputError for a missing path or an unknown format.
    """
    return _format_and_status(Path(path))[0]


def _format_and_status(path: Path) -> tuple[str, os.stat_result]:
    """detect_format's answer and the path's status, from one stat call."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or directory") from None
    if stat.S_ISDIR(status.st_mode) or path.name in ("1r", "fid"):
        if _formats().looks_like_bruker(path):
            return "bruker", status
        if _vendors().looks_like_varian(path):
            return "varian", status
        if stat.S_ISDIR(status.st_mode) and _vendors().looks_like_spinsolve(path):
            return "spinsolve", status
        if stat.S_ISDIR(status.st_mode):
            raise InputError(
                f"{path}: a folder that is not a Bruker experiment (or pdata/<procno>),"
                " a Spinsolve folder (acqu.par and data) or a Varian one (fid and procpar)"
            )
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUFFIX_FORMATS))
        raise InputError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r} (known: {known},"
            " or a Bruker, Spinsolve or Varian folder)"
        )
    return fmt, status


def read_spectrum(path: str | os.PathLike) -> Spectrum:
    """Read one 1D spectrum; the format follows the path (see :func:`detect_format`).

    Bad input raises an InputError naming the file. What the reader did that the user should
    know (a complex array's real part taken, a warning of nmrglue's) is in ``spectrum.notes``,
    one line each, and is also issued as a :class:`ReaderNote` warning.
    """
    path = Path(path)
    fmt, status = _format_and_status(path)
    if stat.S_ISREG(status.st_mode) and status.st_size == 0:
        raise InputError(f"{path}: the file is empty")
    if fmt in _NMR_FORMATS:
        spectrum = _formats().READERS[fmt](path)
    elif fmt in _VENDOR_FORMATS:
        spectrum = _vendors().READERS[fmt](path)
    else:
        spectrum = _PLAIN_READERS[fmt](path)
    issue_notes(spectrum, stacklevel=2)
    return spectrum


def _write_npy(spectrum: Spectrum, values: np.ndarray, destination: Path) -> Path:
    # The header made once per dtype and shape by numpy, then header and values written
    # with one call: np.save into a buffer and the buffer's copy took a third of a
    # 16384-point output's write.
    values = np.ascontiguousarray(values)
    header = _npy_output_header(values.dtype.str, values.shape)
    write_bytes_atomic(destination, header, values)
    return destination


@functools.lru_cache(maxsize=_NPY_HEADERS_KEPT)
def _npy_output_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The .npy (version 1.0) header np.save writes for an array of ``dtype`` and ``shape``."""
    buffer = io.BytesIO()
    fields = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, fields)
    return buffer.getvalue()


def _write_npz(spectrum: Spectrum, values: np.ndarray, destination: Path) -> Path:
    arrays = {"intensities": values, "meta": np.array(_meta_to_json(spectrum.meta))}
    if spectrum.ppm is not None:
        arrays["ppm"] = np.asarray(spectrum.ppm, dtype=np.float64)
    buffer = io.BytesIO()  # a buffer: np.savez would append .npz to another suffix
    np.savez(buffer, **arrays)
    write_bytes_atomic(destination, buffer.getbuffer())
    return destination


def _write_csv(spectrum: Spectrum, values: np.ndarray, destination: Path) -> Path:
    if spectrum.ppm is None:
        raise InputError(
            f"{destination}: CSV holds (ppm, intensity) but {spectrum.source or 'this spectrum'}"
            " has no ppm axis; write .npy, .npz or .h5"
        )
    header = f"ppm,intensity\n{_CSV_META[2:]}{_meta_to_json(spectrum.meta)}"
    table = np.column_stack([np.asarray(spectrum.ppm, dtype=np.float64), values])
    with atomic_path(destination) as tmp:
        # 17 digits keep the ppm axis exact, 9 the float32 intensities.
        np.savetxt(tmp, table, fmt=("%.17g", "%.9g"), delimiter=",", header=header)
    return destination


def _h5_text(text: str):
    """Text as an HDF5 attribute value: a fixed-length string where it fits (see
    _H5_INLINE_TEXT)."""
    data = text.encode("utf-8")
    return np.bytes_(data) if len(data) <= _H5_INLINE_TEXT else text


def _h5_attrs(meta: dict) -> dict:
    """Metadata as HDF5 attributes: numbers, text and numeric arrays as they are,
    anything else (dicts, lists, None) as JSON text named in an extra attribute."""
    attrs, as_json = {}, []
    for name, value in meta.items():
        if isinstance(value, str):
            attrs[name] = _h5_text(value)
        elif isinstance(value, int | float | np.generic) or (
            isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
        ):
            attrs[name] = value
        else:
            attrs[name] = _h5_text(_meta_to_json(value))
            as_json.append(name)
    if as_json:
        attrs[_H5_JSON_ATTRS] = np.array([name.encode("utf-8") for name in as_json])
    return attrs


def _write_hdf5(spectrum: Spectrum, values: np.ndarray, destination: Path) -> Path:
    import h5py  # imported on use: the runtime's other paths do not need it

    with atomic_path(destination) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("intensities", data=values)
            if spectrum.ppm is not None:
                handle.create_dataset("ppm", data=np.asarray(spectrum.ppm, dtype=np.float64))
            handle.attrs.update(_h5_attrs(spectrum.meta))
    return destination


_PLAIN_WRITERS = {"npy": _write_npy, "npz": _write_npz, "csv": _write_csv, "hdf5": _write_hdf5}


def _output_format(spectrum: Spectrum, destination: Path) -> str:
    """A .../pdata/<procno> destination is Bruker; otherwise the suffix decides, and without
    a known one the source's own format (for Bruker: the destination is an experiment)."""
    if destination.parent.name == "pdata" and destination.name.isdigit():
        return "bruker"  # <experiment>/pdata/<procno>
    fmt = SUFFIX_FORMATS.get(destination.suffix.lower(), spectrum.format)
    if fmt in _NPZ_OUTPUT:
        what = {"jcamp": "no JCAMP-DX writer", "spinsolve": "no Spinsolve writer"}
        missing = what.get(fmt, "no writer for Varian/Agilent processed spectra")
        raise InputError(
            f"{destination}: nmrglue has {missing}; write .npz or .csv instead"
            " (output_path_for picks .npz)"
        )
    if fmt not in _PLAIN_WRITERS and fmt not in ("bruker", "pipe"):
        raise InputError(
            f"{destination}: unknown output format; use a suffix among"
            f" {', '.join(sorted(SUFFIX_FORMATS))}"
        )
    return fmt


def write_spectrum(spectrum: Spectrum, destination: str | os.PathLike, intensities=None) -> Path:
    """Write ``intensities`` (default ``spectrum.intensities``) with the spectrum's ppm axis
    and metadata, atomically; returns the path written.

    The format is the destination suffix's, else the spectrum's own. Bruker: ``destination``
    is an experiment folder (the new procno is the first free one above the source's) or an
    explicit <experiment>/pdata/<procno> that must not exist yet; see docs/formats.md.
    """
    destination = Path(destination)
    values = checked_intensities(
        spectrum.intensities if intensities is None else intensities,
        f"intensities to write to {destination}",
    )
    if values.size != len(spectrum):
        raise InputError(
            f"{destination}: {values.size} intensities for a spectrum of {len(spectrum)} points"
            f" ({spectrum.source or 'no source'}); the ppm axis would not fit"
        )
    fmt = _output_format(spectrum, destination)
    if fmt in _NMR_FORMATS:
        return _formats().WRITERS[fmt](spectrum, values, destination)
    return _PLAIN_WRITERS[fmt](spectrum, values, destination)


def output_path_for(
    spectrum: Spectrum, out_dir: str | os.PathLike | None = None, *, in_place: bool = False
) -> Path:
    """Where the denoised copy of ``spectrum`` naturally goes (pass it to write_spectrum).

    Bruker: a new procno (the first free one above the source's) in a copy of the experiment
    at out_dir/<dataset name>/<expno>, or in the source experiment itself with ``in_place``;
    for a spectrum processed from the fid, the free procno after the one
    :func:`processed_path_for` gives (ask for both before writing either). Files:
    out_dir/<stem>_denoised<suffix>, beside the source with ``in_place``; JCAMP-DX, Spinsolve
    and Varian become .npz (nmrglue cannot write them), a Spinsolve file's name starts with
    its folder's (spectrum.1d and data.1d are in every acquisition's folder).
    """
    return _output_path(spectrum, out_dir, in_place, "denoised")


def processed_path_for(
    spectrum: Spectrum, out_dir: str | os.PathLike | None = None, *, in_place: bool = False
) -> Path | None:
    """Where the processed input of a spectrum processed from a FID goes, beside its denoised
    copy, for the user to compare (None for any other spectrum): out_dir/<stem>_processed.npz,
    or for Bruker the first free procno (the denoised copy takes the next one)."""
    if not spectrum.meta.get("processed_from_fid"):
        return None
    return _output_path(spectrum, out_dir, in_place, "processed")


def _output_path(spectrum: Spectrum, out_dir, in_place: bool, kind: str) -> Path:
    if spectrum.format == "bruker":
        skip = kind == "denoised" and bool(spectrum.meta.get("processed_from_fid"))
        return _formats().bruker_output_path(
            spectrum, None if out_dir is None else Path(out_dir), in_place, skip=int(skip)
        )
    if not spectrum.source:
        raise InputError("output_path_for: the spectrum has no source file to name its output")
    source = Path(spectrum.source)
    folder = source.parent if in_place else out_dir
    if folder is None:
        raise InputError(f"{source}: give an output folder, or ask for in-place")
    suffix = ".npz" if spectrum.format in _NPZ_OUTPUT else source.suffix
    stem = source.stem
    if spectrum.format == "spinsolve":
        stem = f"{source.parent.name}_{stem}"
    return Path(folder) / f"{stem}_{kind}{suffix}"
