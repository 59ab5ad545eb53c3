"""Magritek Spinsolve and Varian/Agilent data through nmrglue (``spinsolve.read``,
``varian.read``): a processed Spinsolve spectrum as it is, FIDs processed by
nmrladder.runtime.fid.

- Spinsolve: a folder holding acqu.par and spectrum_processed.1d, spectrum.1d, data.1d,
  fid.1d or nmr_fid.dx (taken in that order), or one such file. A .1d file is Magritek's
  Prospa binary: a 32-byte header (b"SORPATAD", version, type, four dimensions), then x
  values, then interleaved real and imaginary values; nmrglue reads it without checking its
  size, so this module does. A spectrum (spectrum*.1d) keeps its own x axis (ppm, stored
  ascending, as Spinsolve shows it); a FID (data.1d, fid.1d) takes its axis from acqu.par
  (nmrglue's spinsolve.guess_udic). nmr_fid.dx is a JCAMP-DX FID (nmrladder.runtime.jcamp).
- Varian/Agilent: a folder (``*.fid``) holding fid and procpar, or its fid file. The ppm
  axis: reference frequency reffrq (else sfrq), carrier (sfrq - reffrq) from 0 ppm, sw.
  An arrayed fid (several FIDs) is refused by :func:`read_varian` (1D) and read whole by
  :func:`read_varian_fids`.

nmrglue writes neither a Spinsolve spectrum nor a Varian processed spectrum, so both are
written as .npz (nmrladder.runtime.io). See docs/formats.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import nmrglue as ng
import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.fid import FidParams, spectrum_from_fid
from nmrladder.runtime.spectrum import Spectrum, call_nmrglue, checked_intensities

# Spinsolve data files, the processed spectra first; nmr_fid.dx goes to the JCAMP-DX reader.
SPINSOLVE_FILES = ("spectrum_processed.1d", "spectrum.1d", "data.1d", "fid.1d", "nmr_fid.dx")
SPINSOLVE_FIDS = ("data.1d", "fid.1d")
_PROSPA_MAGIC = b"SORPATAD"  # "PROS" "DATA" as little-endian words
_PROSPA_HEADER = 32
_ACQU_FOR_FID = ("bandwidth", "b1Freq", "lowestFrequency", "rxChannel")
_VARIAN_FOR_FID = ("sw", "sfrq", "tn")


# --------------------------------------------------------------------------- Spinsolve


def looks_like_spinsolve(path: Path) -> bool:
    """A folder with acqu.par and a Spinsolve data file, or a .1d file."""
    if path.is_file():
        return path.suffix.lower() == ".1d"
    return (path / "acqu.par").is_file() and any((path / n).is_file() for n in SPINSOLVE_FILES)


def spinsolve_file(path: Path) -> Path:
    """The data file a Spinsolve path means: the file itself, or the folder's first of
    SPINSOLVE_FILES."""
    if path.is_file():
        return path
    for name in SPINSOLVE_FILES:
        if (path / name).is_file():
            return path / name
    raise InputError(f"{path}: a Spinsolve folder without data ({', '.join(SPINSOLVE_FILES)})")


def _check_prospa(path: Path) -> int:
    """The point count of a Prospa .1d file, its header and size checked."""
    data = path.read_bytes()[:_PROSPA_HEADER]
    if len(data) < _PROSPA_HEADER or not data.startswith(_PROSPA_MAGIC):
        raise InputError(f"{path}: not a Spinsolve (Prospa) .1d file (no SORPATAD header)")
    dims = np.frombuffer(data[16:32], "<u4").astype(np.int64)
    if np.any(dims < 1) or np.prod(dims[1:]) != 1:
        raise InputError(f"{path}: a Prospa file of dimensions {dims.tolist()}; 1D data only")
    points = int(dims[0])
    expected = _PROSPA_HEADER + 12 * points  # x values, then real and imaginary, float32
    size = path.stat().st_size
    if size != expected:
        problem = "truncated" if size < expected else "larger than its header says"
        raise InputError(f"{path}: {problem}: {size} bytes for {points} points ({expected} bytes)")
    return points


def _is_fid_file(path: Path, xaxis: np.ndarray, acqu: dict) -> bool:
    """data.1d and fid.1d hold FIDs, spectrum*.1d spectra; another name is a FID when its x
    axis is the time axis of acqu.par's dwell time (microseconds)."""
    name = path.name.lower()
    if name in SPINSOLVE_FIDS or name.startswith("spectrum"):
        return name in SPINSOLVE_FIDS
    dwell = acqu.get("dwellTime")
    if not isinstance(dwell, int | float) or xaxis.size < 2 or xaxis[0] != 0:
        return False
    return math.isclose(float(xaxis[1]), dwell * 1e-6, rel_tol=1e-3)


def _linear_axis(path: Path, xaxis: np.ndarray) -> np.ndarray:
    """The stored ppm values (float32) as an exact even grid through the first and last."""
    n = xaxis.size
    x = xaxis.astype(np.float64)
    grid = np.linspace(x[0], x[-1], n)
    step = abs(x[-1] - x[0]) / max(n - 1, 1)
    if not np.all(np.isfinite(x)) or step == 0 or np.max(np.abs(x - grid)) > 0.5 * step:
        raise InputError(f"{path}: the stored ppm axis is not an evenly spaced grid (corrupt?)")
    return grid


def _spinsolve_fid_params(path: Path, acqu: dict) -> FidParams:
    acqu_file = path.parent / "acqu.par"
    missing = [key for key in _ACQU_FOR_FID if key not in acqu]
    if missing:
        problem = "missing or empty" if not acqu else f"lacks {', '.join(missing)}"
        raise InputError(f"{acqu_file}: {problem}; the FID's spectral width and ppm axis need it")
    udic = call_nmrglue(
        acqu_file, "the acquisition parameters", [],
        ng.spinsolve.get_udic_from_acqu_dict, acqu,
    )  # fmt: skip
    values = [udic["sw"], udic["obs"], udic["car"]]
    if not all(math.isfinite(v) for v in values) or udic["sw"] <= 0 or udic["obs"] <= 0:
        raise InputError(
            f"{path.parent / 'acqu.par'}: corrupt bandwidth, b1Freq or lowestFrequency"
        )
    return FidParams(udic["sw"], udic["obs"], udic["car"], str(udic["label"]), source=str(path))


def read_spinsolve(path: Path) -> Spectrum:
    """A Spinsolve spectrum (spectrum*.1d: its real part and stored ppm axis) or FID (data.1d,
    fid.1d: processed); a folder means its first of SPINSOLVE_FILES."""
    data_file = spinsolve_file(path)
    if data_file.suffix.lower() == ".dx":
        from nmrladder.runtime.jcamp import read_jcamp

        return read_jcamp(data_file)
    if data_file.suffix.lower() != ".1d":
        raise InputError(f"{data_file}: not a Spinsolve data file (.1d or nmr_fid.dx)")
    _check_prospa(data_file)
    notes: list[str] = []
    dic, data = call_nmrglue(
        data_file, "a Spinsolve file", notes, ng.spinsolve.read, str(data_file.parent),
        specfile=data_file.name,
    )  # fmt: skip
    xaxis = np.asarray(dic["spectrum"].pop("xaxis"))
    meta = {"spinsolve": {"acqu": dic["acqu"], "proc": dic["proc"], "header": dic["spectrum"]}}
    if _is_fid_file(data_file, xaxis, dic["acqu"]):
        params = _spinsolve_fid_params(data_file, dic["acqu"])
        return spectrum_from_fid(data, params, "spinsolve", meta, notes)
    intensities = checked_intensities(np.real(data), str(data_file))
    ppm = _linear_axis(data_file, xaxis)
    return Spectrum(intensities, ppm, meta, str(data_file), "spinsolve", notes)


# --------------------------------------------------------------------------- Varian


def looks_like_varian(path: Path) -> bool:
    """A folder holding fid and procpar, or a fid file beside its procpar."""
    folder = path.parent if path.is_file() and path.name == "fid" else path
    return folder.is_dir() and (folder / "fid").is_file() and (folder / "procpar").is_file()


def _procpar_number(folder: Path, procpar: dict, key: str) -> float | None:
    try:
        value = float(procpar[key]["values"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _nucleus(tn: str) -> str:
    """Varian's 'P31', 'H1', 'C13' as '31P', '1H', '13C'."""
    letters = "".join(c for c in tn if c.isalpha())
    digits = "".join(c for c in tn if c.isdigit())
    return f"{digits}{letters}" if digits and letters else tn


def _varian_params(folder: Path, procpar: dict, path: Path) -> FidParams:
    missing = [key for key in _VARIAN_FOR_FID if key not in procpar]
    if missing:
        raise InputError(f"{folder / 'procpar'}: lacks {', '.join(missing)}, needed for the FID")
    sw, sfrq = _procpar_number(folder, procpar, "sw"), _procpar_number(folder, procpar, "sfrq")
    if sw is None or sfrq is None or sw <= 0 or sfrq <= 0:
        raise InputError(f"{folder / 'procpar'}: corrupt sw ({sw}) or sfrq ({sfrq})")
    reffrq = _procpar_number(folder, procpar, "reffrq")
    reffrq = sfrq if reffrq is None or reffrq <= 0 else reffrq
    tn = str(procpar["tn"]["values"][0]) if procpar["tn"].get("values") else ""
    return FidParams(sw, reffrq, (sfrq - reffrq) * 1e6, _nucleus(tn), source=str(path))


def _varian_folder(path: Path) -> Path:
    return path.parent if path.is_file() else path


def _check_varian_fid(fid_file: Path, notes: list[str]) -> None:
    """nmrglue reads as many blocks as the fid's header announces: the header must add up
    (bytes per trace and block) and match the file's size, and mark time-domain data."""
    with open(fid_file, "rb") as handle:
        if fid_file.stat().st_size < 32:
            raise InputError(f"{fid_file}: too short for a Varian fid header (32 bytes)")
        raw = call_nmrglue(fid_file, "the fid header", notes, ng.varian.get_fileheader, handle)
    head = ng.varian.fileheader2dic(raw)
    trace = head["np"] * head["ebytes"]
    block = head["ntraces"] * head["tbytes"] + head["nbheaders"] * 28
    expected = 32 + head["nblocks"] * head["bbytes"]
    size = fid_file.stat().st_size
    sound = (
        head["np"] >= 2 and head["ebytes"] in (2, 4) and min(head["nblocks"], head["ntraces"]) >= 1
    )
    if not sound or head["tbytes"] != trace or head["bbytes"] != block:
        raise InputError(f"{fid_file}: corrupt file header {raw}")
    if size != expected:
        raise InputError(
            f"{fid_file}: {size} bytes, but its header says {head['nblocks']} blocks of"
            f" {head['bbytes']} bytes ({expected}); truncated or corrupt"
        )
    if head["S_SPEC"]:
        raise InputError(f"{fid_file}: holds spectra, not FIDs (status {head['status']:#x})")


def read_varian_fids(
    path: Path, notes: list[str] | None = None
) -> tuple[np.ndarray, FidParams, dict]:
    """All FIDs of a Varian/Agilent 1D experiment (a folder, or its fid file): ([N, td]
    complex, the processing parameters, nmrglue's dictionary with its procpar); an arrayed
    experiment has N > 1, each row one FID as stored. 2D and 3D experiments are refused."""
    folder = _varian_folder(path)
    notes = [] if notes is None else notes
    _check_varian_fid(folder / "fid", notes)
    dic, data = call_nmrglue(
        folder, "a Varian/Agilent fid", notes, ng.varian.read, str(folder), as_2d=True
    )
    for key in ("ni", "ni2", "ni3"):
        count = _procpar_number(folder, dic["procpar"], key)
        if count is not None and count > 1:
            raise InputError(
                f"{folder}: a multidimensional experiment ({key} = {count:g});"
                " nmrladder denoises 1D spectra"
            )
    return np.atleast_2d(data), _varian_params(folder, dic["procpar"], path), dic


def read_varian(path: Path) -> Spectrum:
    """The processed FID of a Varian/Agilent 1D experiment (a folder, or its fid file)."""
    notes: list[str] = []
    fids, params, dic = read_varian_fids(path, notes)
    if fids.shape[0] > 1:
        raise InputError(
            f"{params.source}: an arrayed experiment of {fids.shape[0]} FIDs; read_spectrum"
            " reads one spectrum (the rows: nmrladder.runtime.vendors.read_varian_fids)"
        )
    meta = {"varian": {key: value for key, value in dic.items() if key != "procpar"}}
    meta["procpar"] = {key: item.get("values") for key, item in dic["procpar"].items()}
    folder = str(_varian_folder(path))  # outputs are named after the folder
    return spectrum_from_fid(fids[0], params, "varian", meta, notes, source=folder)


READERS = {"spinsolve": read_spinsolve, "varian": read_varian}

__all__ = [
    "READERS",
    "SPINSOLVE_FILES",
    "looks_like_spinsolve",
    "looks_like_varian",
    "read_spinsolve",
    "read_varian",
    "read_varian_fids",
    "spinsolve_file",
]
